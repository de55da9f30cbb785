package bench

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/govs/govs/internal/checksum"
)

// GenConfig describes a synthetic capture. Generate fills in zero fields with the defaults noted.
type GenConfig struct {
	Flows          int     // number of flows (connections); at least 1, at most MaxGenFlows
	PacketsPerFlow int     // packets per flow in both directions; at least 1
	TCPShare       float64 // fraction of flows that are TCP (the rest UDP), 0..1
	IPv6Share      float64 // fraction of flows over IPv6, 0..1
	Size           SizeDist
	Seed           uint64
	// Server4 and Server6 are the addresses the clients talk to (defaults 198.18.0.100 and
	// 2001:2::100), so a capture replays against a config with those VIPs without -rewrite-dst.
	Server4, Server6 netip.Addr
	TCPPort, UDPPort uint16 // server ports; defaults 80 and 53
	// RSTShare is the fraction of TCP flows that end with a client RST instead of FINs
	// (default 0.1; negative for none).
	RSTShare float64
}

// MaxGenFlows bounds Flows: client addresses and ports stay unique up to it.
const MaxGenFlows = 32768 * 60000

// GenStats describes what Generate wrote.
type GenStats struct {
	Flows, TCPFlows, UDPFlows, IPv6Flows int
	Packets                              int
	ClientPackets, ServerPackets         int // client→server and server→client
	Bytes                                int64
}

// Default generator addresses and ports.
var (
	DefaultServer4 = netip.MustParseAddr("198.18.0.100")
	DefaultServer6 = netip.MustParseAddr("2001:2::100")
)

// MAC addresses in generated captures: clients send to the balancer's MAC, servers to the clients'.
var (
	genClientMAC = [6]byte{0x02, 0x67, 0x76, 0x43, 0x00, 0x01}
	genLBMAC     = [6]byte{0x02, 0x67, 0x76, 0x4c, 0x00, 0x01}
)

// genEpoch is the timestamp of a generated capture's first packet; packets are 1 µs apart.
var genEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// SizeDist is a distribution of frame sizes for data packets (control packets are as small as
// their headers allow). The zero value is IMIX.
type SizeDist struct {
	kind   byte // 0 imix, 'f' fixed, 'u' uniform
	lo, hi int
}

// ParseSizeDist parses "imix" (64, 576 and 1500 bytes in the ratio 7:4:1), "fixed:N" or
// "uniform:A-B" (frame sizes in bytes, Ethernet header included, 60..9000).
func ParseSizeDist(s string) (SizeDist, error) {
	bad := func() (SizeDist, error) {
		return SizeDist{}, fmt.Errorf("size distribution %q is not valid; write imix, fixed:N or uniform:A-B with sizes from 60 to 9000 bytes", s)
	}
	switch {
	case s == "imix" || s == "":
		return SizeDist{}, nil
	case strings.HasPrefix(s, "fixed:"):
		n, err := strconv.Atoi(s[len("fixed:"):])
		if err != nil || n < 60 || n > 9000 {
			return bad()
		}
		return SizeDist{kind: 'f', lo: n, hi: n}, nil
	case strings.HasPrefix(s, "uniform:"):
		a, b, ok := strings.Cut(s[len("uniform:"):], "-")
		lo, err1 := strconv.Atoi(a)
		hi, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || lo < 60 || hi > 9000 || lo > hi {
			return bad()
		}
		return SizeDist{kind: 'u', lo: lo, hi: hi}, nil
	}
	return bad()
}

// String returns the form ParseSizeDist accepts.
func (d SizeDist) String() string {
	switch d.kind {
	case 'f':
		return "fixed:" + strconv.Itoa(d.lo)
	case 'u':
		return fmt.Sprintf("uniform:%d-%d", d.lo, d.hi)
	}
	return "imix"
}

func (d SizeDist) pick(r *rand.Rand) int {
	switch d.kind {
	case 'f':
		return d.lo
	case 'u':
		return d.lo + r.IntN(d.hi-d.lo+1)
	}
	switch n := r.IntN(12); {
	case n < 7:
		return 64
	case n < 11:
		return 576
	}
	return 1500
}

// genFlow is what Generate keeps per flow between rounds.
type genFlow struct {
	cseq, sseq uint32
	kind       uint8 // flowTCP, flowUDP with flowV6 and flowRST bits
}

const (
	flowTCP = 1 << iota
	flowV6
	flowRST
)

// Generate writes a pcap capture of cfg's flows to w. Flows are interleaved round by round (the
// first packet of every flow, then the second, ...), so all of them are open at once: the worst
// case for a connection table. A TCP flow is a handshake, data both ways and a FIN exchange (or a
// client RST); a UDP flow alternates requests and responses. Equal configs give equal bytes.
func Generate(w io.Writer, cfg GenConfig) (GenStats, error) {
	var st GenStats
	if cfg.Flows < 1 || cfg.Flows > MaxGenFlows {
		return st, fmt.Errorf("flows must be from 1 to %d, not %d", MaxGenFlows, cfg.Flows)
	}
	if cfg.PacketsPerFlow < 1 {
		return st, fmt.Errorf("packets per flow must be at least 1, not %d", cfg.PacketsPerFlow)
	}
	if cfg.TCPShare < 0 || cfg.TCPShare > 1 || cfg.IPv6Share < 0 || cfg.IPv6Share > 1 {
		return st, fmt.Errorf("tcp and ipv6 shares must be from 0 to 1")
	}
	if !cfg.Server4.IsValid() {
		cfg.Server4 = DefaultServer4
	}
	if !cfg.Server6.IsValid() {
		cfg.Server6 = DefaultServer6
	}
	if !cfg.Server4.Is4() || !cfg.Server6.Is6() || cfg.Server6.Is4In6() {
		return st, fmt.Errorf("server addresses must be one IPv4 and one IPv6 address")
	}
	if cfg.TCPPort == 0 {
		cfg.TCPPort = 80
	}
	if cfg.UDPPort == 0 {
		cfg.UDPPort = 53
	}
	if cfg.RSTShare == 0 {
		cfg.RSTShare = 0.1
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x676f7673))
	flows := make([]genFlow, cfg.Flows)
	for i := range flows {
		f := &flows[i]
		if rng.Float64() < cfg.TCPShare {
			f.kind |= flowTCP
			st.TCPFlows++
			if rng.Float64() < cfg.RSTShare {
				f.kind |= flowRST
			}
		} else {
			st.UDPFlows++
		}
		if rng.Float64() < cfg.IPv6Share {
			f.kind |= flowV6
			st.IPv6Flows++
		}
		f.cseq, f.sseq = rng.Uint32(), rng.Uint32()
	}
	st.Flows = cfg.Flows

	bw := bufio.NewWriterSize(w, 1<<20)
	pw := pcapgo.NewWriterNanos(bw)
	if err := pw.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		return st, fmt.Errorf("failed to write the capture header: %w", err)
	}
	g := frameGen{srv4: cfg.Server4.As16(), srv6: cfg.Server6.As16()}
	ts := genEpoch
	for k := 0; k < cfg.PacketsPerFlow; k++ {
		for i := range flows {
			b, fromClient := g.packet(&flows[i], i, k, cfg, rng)
			ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(b), Length: len(b)}
			if err := pw.WritePacket(ci, b); err != nil {
				return st, fmt.Errorf("failed to write the capture: %w", err)
			}
			ts = ts.Add(time.Microsecond)
			st.Packets++
			st.Bytes += int64(len(b))
			if fromClient {
				st.ClientPackets++
			} else {
				st.ServerPackets++
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return st, fmt.Errorf("failed to write the capture: %w", err)
	}
	return st, nil
}

// frameGen builds generated frames in one reused buffer.
type frameGen struct {
	buf        [9100]byte
	srv4, srv6 [16]byte
}

// clientAddr returns flow i's client address and port: 198.18.128.0/17 or 2001:2:0:1::/64.
func clientAddr(i int, v6 bool) ([16]byte, uint16) {
	var a [16]byte
	if v6 {
		a = netip.MustParseAddr("2001:2:0:1::").As16()
		binary.BigEndian.PutUint32(a[12:], uint32(i))
		return a, uint16(1024 + i%60000)
	}
	a = netip.AddrFrom4([4]byte{198, 18, 128, 0}).As16()
	binary.BigEndian.PutUint16(a[14:], binary.BigEndian.Uint16(a[14:])+uint16(i%32768))
	return a, uint16(1024 + i/32768)
}

// TCP flags.
const (
	fFIN = 0x01
	fSYN = 0x02
	fRST = 0x04
	fPSH = 0x08
	fACK = 0x10
)

// packet builds packet k of flow i and reports whether the client sent it.
func (g *frameGen) packet(f *genFlow, i, k int, cfg GenConfig, rng *rand.Rand) ([]byte, bool) {
	m := cfg.PacketsPerFlow
	v6 := f.kind&flowV6 != 0
	caddr, cport := clientAddr(i, v6)
	saddr := g.srv4
	if v6 {
		saddr = g.srv6
	}
	fromClient := k%2 == 0
	var flags uint8
	data := false
	if f.kind&flowTCP != 0 {
		switch {
		case k == 0:
			fromClient, flags = true, fSYN
		case k == 1:
			fromClient, flags = false, fSYN|fACK
		case k == 2:
			fromClient, flags = true, fACK
		case f.kind&flowRST != 0 && k == m-1 && m >= 4:
			fromClient, flags = true, fRST|fACK
		case f.kind&flowRST == 0 && m >= 6 && k == m-3:
			fromClient, flags = true, fFIN|fACK
		case f.kind&flowRST == 0 && m >= 6 && k == m-2:
			fromClient, flags = false, fFIN|fACK
		case f.kind&flowRST == 0 && m >= 6 && k == m-1:
			fromClient, flags = true, fACK
		default:
			fromClient, flags, data = (k-3)%2 == 0, fPSH|fACK, true
		}
	} else {
		data = true
	}
	l3 := 20
	if v6 {
		l3 = 40
	}
	l4 := 8
	proto := uint8(17)
	port := cfg.UDPPort
	if f.kind&flowTCP != 0 {
		l4, proto, port = 20, 6, cfg.TCPPort
	}
	hdr := 14 + l3 + l4
	size := hdr
	if data {
		size = max(cfg.Size.pick(rng), hdr)
	}
	payload := size - hdr
	b := g.buf[:max(size, 60)]
	clear(b)
	src, dst, sport, dport := caddr, saddr, cport, port
	smac, dmac := genClientMAC, genLBMAC
	if !fromClient {
		src, dst, sport, dport = saddr, caddr, port, cport
		smac, dmac = genLBMAC, genClientMAC
	}
	copy(b[0:6], dmac[:])
	copy(b[6:12], smac[:])
	ip := b[14:]
	if v6 {
		binary.BigEndian.PutUint16(b[12:], 0x86dd)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(l4+payload))
		ip[6] = proto
		ip[7] = 64
		copy(ip[8:24], src[:])
		copy(ip[24:40], dst[:])
	} else {
		binary.BigEndian.PutUint16(b[12:], 0x0800)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(l3+l4+payload))
		binary.BigEndian.PutUint16(ip[4:], uint16(i+k))
		ip[6] = 0x40 // DF
		ip[8] = 64
		ip[9] = proto
		copy(ip[12:16], src[12:])
		copy(ip[16:20], dst[12:])
		binary.BigEndian.PutUint16(ip[10:], checksum.IPv4Header(ip[:20]))
	}
	t := ip[l3:]
	binary.BigEndian.PutUint16(t[0:], sport)
	binary.BigEndian.PutUint16(t[2:], dport)
	for j := 0; j < payload; j++ {
		t[l4+j] = byte(i + j)
	}
	seg := t[:l4+payload]
	if proto == 6 {
		seq, ack := &f.cseq, f.sseq
		if !fromClient {
			seq, ack = &f.sseq, f.cseq
		}
		binary.BigEndian.PutUint32(t[4:], *seq)
		if flags&fACK != 0 {
			binary.BigEndian.PutUint32(t[8:], ack)
		}
		t[12] = 5 << 4
		t[13] = flags
		binary.BigEndian.PutUint16(t[14:], 65535)
		*seq += uint32(payload)
		if flags&(fSYN|fFIN) != 0 {
			*seq++
		}
	} else {
		binary.BigEndian.PutUint16(t[4:], uint16(l4+payload))
	}
	var c uint16
	if v6 {
		c = checksum.Transport(src[:], dst[:], proto, seg)
	} else {
		c = checksum.Transport(src[12:], dst[12:], proto, seg)
	}
	off := 16
	if proto == 17 {
		off = 6
	}
	binary.BigEndian.PutUint16(t[off:], c)
	return b, fromClient
}
