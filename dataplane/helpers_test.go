package dataplane

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/dataplane/afpacket"
	"github.com/govs/govs/dataplane/dataplanetest"
	"github.com/govs/govs/dataplane/frame"
)

// Test topology: port 0 faces the clients, port 1 the real servers. Addresses are in 198.18.0.0/15
// and 2001:2::/48.
var (
	macPort0  = [6]byte{0x02, 0, 0, 0, 0, 0x01}
	macPort1  = [6]byte{0x02, 0, 0, 0, 0, 0x02}
	macClient = [6]byte{0x02, 0xc1, 0, 0, 0, 0x01}
	macRouter = [6]byte{0x02, 0xc1, 0, 0, 0, 0xfe}
	macRS     = [][6]byte{{0x02, 0x5e, 0, 0, 0, 0x01}, {0x02, 0x5e, 0, 0, 0, 0x02}, {0x02, 0x5e, 0, 0, 0, 0x03}}
)

type realSpec struct {
	id         uint16
	addr       string
	weight     int32
	mac        [6]byte
	unresolved bool
}

type svcSpec struct {
	id     uint16
	vip    string
	proto  uint8
	method Method
	sched  string
	reals  []realSpec
}

// buildTables compiles specs the way package compile does: Services and Reals indexed by ID,
// Dests mirroring the reals' weights and resolution, then Finish.
func buildTables(gen uint32, specs ...svcSpec) *Tables {
	t := &Tables{Gen: gen}
	for _, s := range specs {
		svc := &Service{
			ID:        s.id,
			Name:      s.vip,
			VIP:       netip.MustParseAddrPort(s.vip),
			Proto:     s.proto,
			Method:    s.method,
			Scheduler: s.sched,
		}
		if svc.Scheduler == "" {
			svc.Scheduler = "rr"
		}
		for _, rs := range s.reals {
			r := &Real{ID: rs.id, Service: s.id, Addr: netip.MustParseAddrPort(rs.addr), Weight: rs.weight,
				Port: 1, MAC: rs.mac, Resolved: !rs.unresolved}
			svc.RealIDs = append(svc.RealIDs, rs.id)
			for len(t.Reals) <= int(rs.id) {
				t.Reals = append(t.Reals, nil)
			}
			t.Reals[rs.id] = r
		}
		for len(t.Services) <= int(s.id) {
			t.Services = append(t.Services, nil)
		}
		t.Services[s.id] = svc
	}
	t.Finish()
	return t
}

// standardSpecs is one NAT service per family and protocol (two real servers each, rr) and a DR
// service per family.
func standardSpecs() []svcSpec {
	return []svcSpec{
		{id: 0, vip: "198.18.0.100:80", proto: 6, method: MethodNAT, reals: []realSpec{
			{id: 0, addr: "198.18.2.1:8080", weight: 1, mac: macRS[0]}, {id: 1, addr: "198.18.2.2:8080", weight: 1, mac: macRS[1]}}},
		{id: 1, vip: "198.18.0.100:4000", proto: 17, method: MethodNAT, reals: []realSpec{
			{id: 2, addr: "198.18.2.1:4001", weight: 1, mac: macRS[0]}, {id: 3, addr: "198.18.2.2:4001", weight: 1, mac: macRS[1]}}},
		{id: 2, vip: "[2001:2::100]:80", proto: 6, method: MethodNAT, reals: []realSpec{
			{id: 4, addr: "[2001:2:0:2::1]:8080", weight: 1, mac: macRS[0]}, {id: 5, addr: "[2001:2:0:2::2]:8080", weight: 1, mac: macRS[1]}}},
		{id: 3, vip: "[2001:2::100]:4000", proto: 17, method: MethodNAT, reals: []realSpec{
			{id: 6, addr: "[2001:2:0:2::1]:4001", weight: 1, mac: macRS[0]}, {id: 7, addr: "[2001:2:0:2::2]:4001", weight: 1, mac: macRS[1]}}},
		{id: 4, vip: "198.18.0.200:80", proto: 6, method: MethodDR, reals: []realSpec{
			{id: 8, addr: "198.18.2.11:80", weight: 1, mac: macRS[2]}}},
		{id: 5, vip: "[2001:2::200]:80", proto: 6, method: MethodDR, reals: []realSpec{
			{id: 9, addr: "[2001:2:0:2::11]:80", weight: 1, mac: macRS[2]}}},
		{id: 6, vip: "198.18.0.200:4000", proto: 17, method: MethodDR, reals: []realSpec{
			{id: 10, addr: "198.18.2.11:53", weight: 1, mac: macRS[2]}}},
	}
}

// rig is a worker with two in-memory ports whose transmitted frames are collected.
type rig struct {
	w      *Worker
	ports  [2]*dataplanetest.Port
	out    [2]*dataplanetest.Collector
	now    int64
	tables *Tables
}

func newRig(tb testing.TB, t *Tables, capacity int) *rig {
	tb.Helper()
	r := &rig{tables: t}
	ps := make([]Transmitter, 2)
	for i := range r.ports {
		r.ports[i] = dataplanetest.NewPort(1<<17, 64)
		r.out[i] = &dataplanetest.Collector{}
		r.ports[i].Sink = r.out[i].Sink
		ps[i] = r.ports[i]
	}
	r.w = mustWorker(tb, 0, ps, [][6]byte{macPort0, macPort1}, capacity)
	r.w.SetTables(t)
	return r
}

// sent is one transmitted frame and the port it left on.
type sent struct {
	port  int
	frame []byte
	vnet  afpacket.VnetHdr
}

// process runs one frame (a copy) received on port in through the worker, flushes, and returns
// what was transmitted.
func (r *rig) process(in int, b []byte, meta afpacket.RxMeta) []sent {
	r.now += 1e6
	if meta.Len == 0 {
		meta.Len = uint32(len(b))
	}
	buf := append([]byte(nil), b...)
	for i := range r.out {
		r.out[i].Frames, r.out[i].Vnets = nil, nil
	}
	r.w.Process(in, buf, &meta, r.now)
	return r.flushed()
}

// flushed flushes the worker and returns what it transmitted since the collectors were emptied.
func (r *rig) flushed() []sent {
	r.w.FlushAll()
	var out []sent
	for i, c := range r.out {
		for j := range c.Frames {
			out = append(out, sent{port: i, frame: c.Frames[j], vnet: c.Vnets[j]})
		}
	}
	return out
}

// one runs a frame and requires exactly one transmitted frame.
func (r *rig) one(tb testing.TB, in int, b []byte, meta afpacket.RxMeta) sent {
	tb.Helper()
	out := r.process(in, b, meta)
	if len(out) != 1 {
		tb.Fatalf("transmitted %d frames, want 1; counters: %v", len(out), nonZero(r.w))
	}
	return out[0]
}

// none runs a frame and requires that nothing is transmitted and drop d is counted once more.
func (r *rig) none(tb testing.TB, in int, b []byte, meta afpacket.RxMeta, d Drop) {
	tb.Helper()
	before := r.w.c[cDropBase+int(d)]
	if out := r.process(in, b, meta); len(out) != 0 {
		tb.Fatalf("transmitted %d frames, want none (drop %v)", len(out), d)
	}
	if got := r.w.c[cDropBase+int(d)]; got != before+1 {
		tb.Fatalf("drop %v counted %d times, want 1; counters: %v", d, got-before, nonZero(r.w))
	}
}

// nonZero lists a worker's non-zero counters by name, for failure messages.
func nonZero(w *Worker) map[string]uint64 {
	m := map[string]uint64{}
	for i, v := range w.c {
		if v == 0 {
			continue
		}
		switch {
		case i < cDropBase:
			m[counterNames[i]] = v
		case i < cParseBase:
			m["drop:"+Drop(i-cDropBase).String()] = v
		default:
			m["parse:"+frame.Error(i-cParseBase).String()] = v
		}
	}
	return m
}

// pkt describes a test frame.
type pkt struct {
	srcMAC, dstMAC [6]byte
	src, dst       netip.AddrPort
	proto          uint8  // 6 or 17
	flags          uint8  // TCP flags
	payload        int    // payload bytes
	noUDPSum       bool   // IPv4 UDP without checksum
	ipID           uint16 // IPv4 identification
}

func mustAP(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func hw(m [6]byte) net.HardwareAddr { return net.HardwareAddr(m[:]) }

func ipOf(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }

func fill(n int, seed byte) gopacket.Payload {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7) + seed
	}
	return p
}

// l3l4 returns the IP and transport layers of a packet (no Ethernet), with checksums set up.
func l3l4(tb testing.TB, p pkt) []gopacket.SerializableLayer {
	tb.Helper()
	var nl gopacket.NetworkLayer
	var ls []gopacket.SerializableLayer
	proto := layers.IPProtocol(p.proto)
	if p.src.Addr().Is4() {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, Id: p.ipID, Flags: layers.IPv4DontFragment,
			SrcIP: ipOf(p.src.Addr()), DstIP: ipOf(p.dst.Addr())}
		nl, ls = ip, append(ls, ip)
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: ipOf(p.src.Addr()), DstIP: ipOf(p.dst.Addr())}
		nl, ls = ip, append(ls, ip)
	}
	switch p.proto {
	case 6:
		t := &layers.TCP{SrcPort: layers.TCPPort(p.src.Port()), DstPort: layers.TCPPort(p.dst.Port()), Seq: 1000, Ack: 7,
			Window: 65535, FIN: p.flags&tcpFIN != 0, SYN: p.flags&tcpSYN != 0, RST: p.flags&tcpRST != 0,
			ACK: p.flags&tcpACK != 0, PSH: p.payload > 0}
		if err := t.SetNetworkLayerForChecksum(nl); err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, t)
	case 17:
		u := &layers.UDP{SrcPort: layers.UDPPort(p.src.Port()), DstPort: layers.UDPPort(p.dst.Port())}
		if err := u.SetNetworkLayerForChecksum(nl); err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, u)
	default:
		tb.Fatalf("unsupported proto %d", p.proto)
	}
	return append(ls, fill(p.payload, byte(p.src.Port())))
}

func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatalf("failed to serialize test frame: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func ethFor(src, dst [6]byte, v4 bool) *layers.Ethernet {
	et := layers.EthernetTypeIPv6
	if v4 {
		et = layers.EthernetTypeIPv4
	}
	return &layers.Ethernet{SrcMAC: hw(src), DstMAC: hw(dst), EthernetType: et}
}

// build serializes p as an Ethernet frame with valid checksums.
func build(tb testing.TB, p pkt) []byte {
	tb.Helper()
	b := serialize(tb, append([]gopacket.SerializableLayer{ethFor(p.srcMAC, p.dstMAC, p.src.Addr().Is4())}, l3l4(tb, p)...)...)
	if p.noUDPSum {
		var q frame.Parsed
		if frame.Parse(b, &q) != frame.ErrNone {
			tb.Fatal("test frame does not parse")
		}
		b[q.L4Off+6], b[q.L4Off+7] = 0, 0
	}
	return b
}

// clientPkt is a packet from the client (on port 0) to dst.
func clientPkt(src, dst string, proto, flags uint8) pkt {
	return pkt{srcMAC: macClient, dstMAC: macPort0, src: netip.MustParseAddrPort(src), dst: netip.MustParseAddrPort(dst),
		proto: proto, flags: flags, payload: 11}
}

// decoded decodes an Ethernet frame with gopacket and fails on any decoding error.
func decoded(tb testing.TB, b []byte) gopacket.Packet {
	tb.Helper()
	pk := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	if el := pk.ErrorLayer(); el != nil {
		tb.Fatalf("gopacket cannot decode the frame: %v", el.Error())
	}
	return pk
}

// checkChecksums re-serializes every layer of b with gopacket computing the IPv4 header and
// transport checksums from scratch, and requires the result to equal b: every checksum in b is valid.
// A zero IPv4 UDP checksum (none) is accepted as is.
func checkChecksums(tb testing.TB, b []byte) {
	tb.Helper()
	pk := decoded(tb, b)
	var nl gopacket.NetworkLayer
	var ls []gopacket.SerializableLayer
	for _, l := range pk.Layers() {
		switch l := l.(type) {
		case *layers.IPv4:
			if nl == nil {
				nl = l
			}
		case *layers.IPv6:
			if nl == nil {
				nl = l
			}
		case *layers.TCP:
			l.SetNetworkLayerForChecksum(nl)
		case *layers.UDP:
			l.SetNetworkLayerForChecksum(nl) // an IPv4 UDP checksum of 0 (none) is compared as 0 below
		case *layers.ICMPv6:
			l.SetNetworkLayerForChecksum(nl)
		}
		s, ok := l.(gopacket.SerializableLayer)
		if !ok {
			tb.Fatalf("layer %v is not serializable", l.LayerType())
		}
		ls = append(ls, s)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, ls...); err != nil {
		tb.Fatalf("gopacket cannot re-serialize the frame: %v", err)
	}
	want := buf.Bytes()
	got := b
	if u, ok := pk.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && u.Checksum == 0 && pk.Layer(layers.LayerTypeIPv4) != nil {
		var q frame.Parsed
		frame.Parse(b, &q)
		want = append([]byte(nil), want...)
		want[q.L4Off+6], want[q.L4Off+7] = 0, 0
	}
	// Compare up to the end of the IP packet: gopacket pads short frames to 60 bytes its own way.
	var q frame.Parsed
	if e := frame.Parse(b, &q); e != frame.ErrNone {
		tb.Fatalf("frame does not parse: %v", e)
	}
	if len(want) < int(q.End) {
		tb.Fatalf("gopacket re-serialized %d bytes of a %d-byte packet", len(want), q.End)
	}
	got, want = got[:q.End], want[:q.End]
	if !bytes.Equal(got, want) {
		tb.Fatalf("checksums invalid:\n got %x\nwant %x", got, want)
	}
}

// tuple returns the addresses and ports of a transmitted frame, as gopacket decodes them.
func tuple(tb testing.TB, b []byte) (src, dst netip.AddrPort) {
	tb.Helper()
	pk := decoded(tb, b)
	var s, d netip.Addr
	switch ip := pk.NetworkLayer().(type) {
	case *layers.IPv4:
		s, _ = netip.AddrFromSlice(ip.SrcIP.To4())
		d, _ = netip.AddrFromSlice(ip.DstIP.To4())
	case *layers.IPv6:
		s, _ = netip.AddrFromSlice(ip.SrcIP)
		d, _ = netip.AddrFromSlice(ip.DstIP)
	default:
		tb.Fatal("no IP layer")
	}
	var sp, dp uint16
	switch l := pk.TransportLayer().(type) {
	case *layers.TCP:
		sp, dp = uint16(l.SrcPort), uint16(l.DstPort)
	case *layers.UDP:
		sp, dp = uint16(l.SrcPort), uint16(l.DstPort)
	}
	return netip.AddrPortFrom(s, sp), netip.AddrPortFrom(d, dp)
}

func macs(b []byte) (dst, src [6]byte) {
	copy(dst[:], b[0:6])
	copy(src[:], b[6:12])
	return
}

// pseudoSum is the folded ones' complement sum of the pseudo-header of the parsed frame, the value
// Linux leaves in the checksum field of a CHECKSUM_PARTIAL packet (computed with a naive loop).
func pseudoSum(p *frame.Parsed) uint16 {
	var ph []byte
	l4len := p.End - p.L4Off
	if p.Family == 4 {
		ph = append(ph, p.Src[12:]...)
		ph = append(ph, p.Dst[12:]...)
		ph = append(ph, 0, p.Proto)
		ph = binary.BigEndian.AppendUint16(ph, uint16(l4len))
	} else {
		ph = append(ph, p.Src[:]...)
		ph = append(ph, p.Dst[:]...)
		ph = binary.BigEndian.AppendUint32(ph, l4len)
		ph = append(ph, 0, 0, 0, p.Proto)
	}
	return naiveSum(ph, 0)
}

// naiveSum is the textbook RFC 1071 folded sum (not complemented).
func naiveSum(b []byte, s uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
		s = (s & 0xffff) + (s >> 16)
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = (s & 0xffff) + (s >> 16)
	}
	return uint16(s)
}

// kernelComplete finishes a CHECKSUM_PARTIAL frame the way skb_checksum_help does: sum from start to
// the end with the field as it is, complement, store at start+offset (a zero result is sent as 0xffff).
func kernelComplete(b []byte, start, offset int) {
	s := ^naiveSum(b[start:], 0)
	if s == 0 {
		s = 0xffff
	}
	binary.BigEndian.PutUint16(b[start+offset:], s)
}

// makePartial turns the valid transport checksum of b into the partial form Linux leaves for
// CHECKSUM_PARTIAL, and returns the vnet header describing it (csum_start counted from the frame start).
func makePartial(tb testing.TB, b []byte) afpacket.VnetHdr {
	tb.Helper()
	var p frame.Parsed
	if e := frame.Parse(b, &p); e != frame.ErrNone {
		tb.Fatalf("test frame does not parse: %v", e)
	}
	off := uint16(16)
	if p.Proto == 17 {
		off = 6
	}
	binary.BigEndian.PutUint16(b[int(p.L4Off)+int(off):], pseudoSum(&p))
	return afpacket.VnetHdr{Flags: afpacket.VnetHdrFNeedsCsum, CsumStart: uint16(p.L4Off), CsumOffset: off}
}

// mustWorker builds a worker with a table of capacity entries and IPVS's default timeouts.
func mustWorker(tb testing.TB, id int, ports []Transmitter, macs [][6]byte, capacity int) *Worker {
	w, err := NewWorker(id, ports, macs, conntrack.Config{MaxEntries: capacity})
	if err != nil {
		if tb == nil {
			panic(err)
		}
		tb.Fatal(err)
	}
	return w
}
