package bench

import (
	"bytes"
	"encoding/binary"
	"maps"
	"net"
	"os"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/dataplane"
	"github.com/govs/govs/internal/checksum"
)

// capFrame is one frame of a hand-made capture: its bytes as captured, its length on the wire
// (0: as captured) and its time since the capture's start.
type capFrame struct {
	b    []byte
	wire int
	at   time.Duration
}

// reuseGen builds the frames of testdata/reuse.pcap, 1 ms apart unless told.
type reuseGen struct {
	t      *testing.T
	frames []capFrame
	at     time.Duration
}

func (g *reuseGen) add(b []byte) { g.addWire(b, 0) }

func (g *reuseGen) addWire(b []byte, wire int) {
	g.at += time.Millisecond
	g.frames = append(g.frames, capFrame{b: b, wire: wire, at: g.at})
}

// seg builds a TCP segment between client:cport and the VIP's port 80 (v6: 2001:2::100, else
// 198.18.0.100), from the client or to it, with flags from "SAFRP" and payload bytes of data.
func (g *reuseGen) seg(client net.IP, cport uint16, fromClient bool, flags string, payload int) []byte {
	v6 := client.To4() == nil
	e := eth(layers.EthernetTypeIPv4)
	var ip gopacket.NetworkLayer
	var l3 gopacket.SerializableLayer
	src, dst := client, tVIP4
	if v6 {
		e.EthernetType = layers.EthernetTypeIPv6
		dst = tVIP6
	}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(cport), DstPort: 80, Seq: 1000, Ack: 1, Window: 1000}
	if !fromClient {
		src, dst = dst, src
		tcp.SrcPort, tcp.DstPort = tcp.DstPort, tcp.SrcPort
		e.SrcMAC, e.DstMAC = e.DstMAC, e.SrcMAC
	}
	if v6 {
		h := ip6(layers.IPProtocolTCP)
		h.SrcIP, h.DstIP = src, dst
		ip, l3 = h, h
	} else {
		h := ip4(layers.IPProtocolTCP)
		h.SrcIP, h.DstIP = src, dst
		ip, l3 = h, h
	}
	for _, f := range flags {
		switch f {
		case 'S':
			tcp.SYN = true
		case 'A':
			tcp.ACK = true
		case 'F':
			tcp.FIN = true
		case 'R':
			tcp.RST = true
		case 'P':
			tcp.PSH = true
		}
	}
	tcp.SetNetworkLayerForChecksum(ip)
	return build(g.t, e, l3, tcp, gopacket.Payload(bytes.Repeat([]byte{'x'}, payload)))
}

// connection adds a handshake and data both ways.
func (g *reuseGen) connection(client net.IP, cport uint16) {
	g.add(g.seg(client, cport, true, "S", 0))
	g.add(g.seg(client, cport, false, "SA", 0))
	g.add(g.seg(client, cport, true, "A", 0))
	g.add(g.seg(client, cport, true, "PA", 10))
	g.add(g.seg(client, cport, false, "PA", 20))
}

// finish adds the FIN exchange, which leaves the connection in TIME_WAIT.
func (g *reuseGen) finish(client net.IP, cport uint16) {
	g.add(g.seg(client, cport, true, "FA", 0))
	g.add(g.seg(client, cport, false, "FA", 0))
	g.add(g.seg(client, cport, true, "A", 0))
}

// ipv4Checksum recomputes the IPv4 header checksum of frame b (IP header at 14).
func ipv4Checksum(b []byte) {
	ihl := int(b[14]&0xf) * 4
	b[14+10], b[14+11] = 0, 0
	binary.BigEndian.PutUint16(b[14+10:], checksum.IPv4Header(b[14:14+ihl]))
}

// reuseFrames is testdata/reuse.pcap: what a fuzzing capture mixes, on few tuples. Clients reuse
// their tuple (port 20, as scapy sends by default) after RSTs and FIN exchanges, which starts new
// connections that the data plane schedules afresh, as IPVS does (conn_reuse_mode); frames that
// close a connection though they look odd (IPv4 options, a wrong TCP checksum, a first fragment)
// do the same; malformed frames in the middle of a connection are dropped and change nothing.
func reuseFrames(t *testing.T) []capFrame {
	g := &reuseGen{t: t}
	a := net.IP{198, 18, 128, 1}
	// A: RST from the client, then the FIN exchange, then a RST from the server, each followed by
	// a new connection on the same tuple.
	g.connection(a, 20)
	g.add(g.seg(a, 20, true, "RA", 0))
	g.connection(a, 20)
	g.finish(a, 20)
	g.connection(a, 20)
	g.add(g.seg(a, 20, false, "R", 0))
	g.connection(a, 20)

	// B: IPv6, the tuple reused after the FIN exchange.
	b6 := net.ParseIP("2001:2:0:1::1")
	g.connection(b6, 20)
	g.finish(b6, 20)
	g.connection(b6, 20)

	// E: resets that are valid though unusual, each followed by a new connection: with IPv4
	// options (a NOP and an end of list), with a wrong TCP checksum (neither govs nor IPVS checks
	// it), in a first fragment.
	e := net.IP{198, 18, 128, 5}
	g.connection(e, 20)
	{
		h := ip4(layers.IPProtocolTCP)
		h.SrcIP = e
		h.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
		tcp := &layers.TCP{SrcPort: 20, DstPort: 80, Seq: 1000, RST: true, Window: 1000}
		tcp.SetNetworkLayerForChecksum(h)
		g.add(build(t, eth(layers.EthernetTypeIPv4), h, tcp))
	}
	g.connection(e, 20)
	bad := g.seg(e, 20, true, "R", 0)
	bad[14+20+16] ^= 0x5a // TCP checksum
	g.add(bad)
	g.connection(e, 20)
	frag := g.seg(e, 20, true, "R", 0)
	frag[14+6] |= 0x20 // more fragments, offset 0
	ipv4Checksum(frag)
	g.add(frag)
	g.connection(e, 20)

	// F: malformed resets in the middle of a connection, every one dropped by the data plane
	// before it reaches the connection; then a stray duplicate SYN, which an established
	// connection keeps (no new connection), and more data.
	f := net.IP{198, 18, 128, 6}
	g.connection(f, 20)
	rst := g.seg(f, 20, true, "RA", 0)
	mod := func(fn func(b []byte)) []byte {
		b := bytes.Clone(rst)
		fn(b)
		return b
	}
	g.add(mod(func(b []byte) { b[14+10] ^= 0xff }))                                                        // bad IPv4 header checksum
	g.add(mod(func(b []byte) { binary.BigEndian.PutUint16(b[14+2:], 20+12); ipv4Checksum(b) })[:14+20+12]) // TCP header cut
	g.add(mod(func(b []byte) { b[14] = 0x44; ipv4Checksum(b) }))                                           // IHL 4
	g.add(mod(func(b []byte) { binary.BigEndian.PutUint16(b[14+2:], 1400); ipv4Checksum(b) }))             // total length beyond the frame
	g.add(mod(func(b []byte) { b[14+20+12] = 0x30 }))                                                      // TCP data offset 3
	g.add(mod(func(b []byte) { b[14+7] = 8; ipv4Checksum(b) }))                                            // a later fragment (offset 64)
	g.addWire(bytes.Clone(rst), len(rst)+6)                                                                // the snap length cut its padding off
	g.add(g.seg(f, 20, true, "S", 0))
	g.add(g.seg(f, 20, true, "PA", 10))
	g.add(g.seg(f, 20, false, "PA", 20))

	// D: a stray reset from the VIP comes first; the flow's client is still the other side.
	d := net.IP{198, 18, 128, 7}
	g.add(g.seg(d, 20, false, "RA", 0))
	g.connection(d, 20)

	// C: a UDP flow quiet for longer than the UDP timeout (300 s), then busy again: the data
	// plane may have swept its connection away, and then schedules it afresh.
	c := net.IP{198, 18, 128, 8}
	u := func(fromClient bool) []byte {
		h := ip4(layers.IPProtocolUDP)
		h.SrcIP = c
		ud := &layers.UDP{SrcPort: 5300, DstPort: 53}
		e := eth(layers.EthernetTypeIPv4)
		if !fromClient {
			h.SrcIP, h.DstIP = h.DstIP, h.SrcIP
			ud.SrcPort, ud.DstPort = ud.DstPort, ud.SrcPort
			e.SrcMAC, e.DstMAC = e.DstMAC, e.SrcMAC
		}
		ud.SetNetworkLayerForChecksum(h)
		return build(t, e, h, ud, gopacket.Payload("query"))
	}
	g.add(u(true))
	g.add(u(false))
	g.at += 301 * time.Second
	g.add(u(true))
	g.add(u(false))
	return g.frames
}

// encodeCapture writes frames as a pcap file.
func encodeCapture(t *testing.T, frames []capFrame) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		wire := max(f.wire, len(f.b))
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: genEpoch.Add(f.at), CaptureLength: len(f.b), Length: wire}, f.b); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// TestReplayTupleReuse replays testdata/reuse.pcap (written by reuseFrames; -update rewrites it).
// The data plane schedules every new connection on a reused tuple afresh, to another real server
// by round robin, as IPVS does; the harness must count that as a new connection, not as sticky
// violations (one live connection split): no live connection is split here.
func TestReplayTupleReuse(t *testing.T) {
	const path = "testdata/reuse.pcap"
	want := encodeCapture(t, reuseFrames(t))
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestReplayTupleReuse -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not what reuseFrames writes: run go test -run TestReplayTupleReuse -update", path)
	}
	// Every malformed reset is dropped for what is wrong with it; nothing else is dropped but,
	// with one interface, the stray reset from the VIP, which comes before flow D has a
	// connection (with two, replies come after the round's client frames).
	malformed := map[string]uint64{
		"bad_ipv4_checksum": 1, "truncated_tcp": 1, "bad_ipv4_ihl": 1, "bad_ipv4_length": 1,
		"bad_tcp_offset": 1, "fragment": 1, "capture_truncated": 1,
	}
	oneArmed := maps.Clone(malformed)
	oneArmed["no_service"] = 1
	configs := []struct {
		name        string
		path        string
		rescheduled uint64 // new connections on reused tuples
		drops       map[string]uint64
	}{
		// One interface: every frame in capture order. A: 3 (after the client's RST, the FIN
		// exchange, the server's RST), B: 1 (FIN exchange), E: 3.
		{"one-armed", "", 7, oneArmed},
		// Two interfaces: a round's client frames first, then the replies; the server's FIN or
		// RST comes after the client's next SYN, so only resets from the client close in time.
		// A: 1 (client RST), E: 3.
		{"two interfaces", "testdata/bench.toml", 4, malformed},
	}
	for _, tc := range configs {
		t.Run(tc.name, func(t *testing.T) {
			cfg := loadConfig(t, "testdata/bench.toml")
			if tc.path == "" {
				cfg = writeConfig(t, "[dataplane]\ninterfaces = [\"eth0\"]\n"+services("nat"))
			}
			for _, workers := range []int{1, 2} {
				c, err := ReadCaptureFile(path)
				if err != nil {
					t.Fatal(err)
				}
				rep, err := Replay(c, ReplayConfig{Config: cfg, Workers: workers})
				if err != nil {
					t.Fatal(err)
				}
				accounted(t, rep)
				if rep.StickyViolations != 0 {
					t.Errorf("%d workers: %d sticky violations, want 0", workers, rep.StickyViolations)
				}
				if rep.Rescheduled != tc.rescheduled {
					t.Errorf("%d workers: %d connections rescheduled, want %d", workers, rep.Rescheduled, tc.rescheduled)
				}
				if !maps.Equal(rep.Dropped, tc.drops) {
					t.Errorf("%d workers: drops %v, want %v", workers, rep.Dropped, tc.drops)
				}
				// Every packet govs sent belongs to a flow's connection on a real server: the
				// replies were presented as from the real server of the flow's current connection,
				// and flow D's client was recognised though its first frame came from the VIP.
				var pkts, flows uint64
				moved := 0
				for _, r := range rep.Reals {
					pkts += r.Packets
					flows += r.Flows
				}
				if pkts != rep.Forwarded+rep.Replied {
					t.Errorf("%d workers: real servers got %d packets, govs sent %d", workers, pkts, rep.Forwarded+rep.Replied)
				}
				if want := uint64(rep.Flows) + rep.Rescheduled; flows != want {
					t.Errorf("%d workers: %d connections over the real servers, want flows %d + rescheduled %d", workers, flows, rep.Flows, rep.Rescheduled)
				}
				for _, r := range rep.Reals {
					if r.Service == "tcp/198.18.0.100:80" && r.Flows > 0 {
						moved++
					}
				}
				if moved < 2 {
					t.Errorf("%d workers: the reused tuples' connections all went to one real server: the capture tests nothing", workers)
				}
			}
		})
	}
}

// TestReplayOnePacket: a one_packet service schedules every datagram on its own (ipvsadm -o), so
// the datagrams of one flow go to its real servers in turn; no violation.
func TestReplayOnePacket(t *testing.T) {
	cfg := writeConfig(t, `[dataplane]
interfaces = ["lan0", "srv0"]

[[virtual_server]]
address = "198.18.0.100:53"
protocol = "udp"
scheduler = "rr"
method = "nat"
one_packet = true
real_server = [{address = "198.19.0.11:53"}, {address = "198.19.0.12:53"}]
`)
	const flows = 201 // odd: round robin over two servers moves each flow's next datagram to the other
	c, st := genCapture(t, GenConfig{Flows: flows, PacketsPerFlow: 6, TCPShare: 0, IPv6Share: 0, Seed: 8})
	rep, err := Replay(c, ReplayConfig{Config: cfg, Loops: 2})
	if err != nil {
		t.Fatal(err)
	}
	accounted(t, rep)
	if rep.StickyViolations != 0 {
		t.Errorf("%d sticky violations, want 0", rep.StickyViolations)
	}
	// Three datagrams per flow and loop, each a connection.
	if want := uint64(2 * (st.ClientPackets - flows)); rep.Rescheduled != want {
		t.Errorf("rescheduled %d, want %d", rep.Rescheduled, want)
	}
	for _, r := range rep.Reals {
		if r.Flows != uint64(st.ClientPackets) {
			t.Errorf("%s: %d connections, want half of the %d datagrams of 2 loops", r.Address, r.Flows, 2*st.ClientPackets)
		}
	}
}

// TestJudge: the harness still calls a split a split. Each case is a flow's packets in order, each
// some time after the one before: from the client to real server 0, or replies; then the verdict
// on a last packet from the client sent to real server 1.
func TestJudge(t *testing.T) {
	const (
		syn = conntrack.TCPFlagSYN
		ack = conntrack.TCPFlagACK
		fin = conntrack.TCPFlagFIN
		rst = conntrack.TCPFlagRST
	)
	type pkt struct {
		reply bool
		flags uint8
		at    time.Duration
	}
	tables := func(onePacket bool, method dataplane.Method) *dataplane.Tables {
		tb := &dataplane.Tables{Services: []*dataplane.Service{{ID: 0, Proto: 6, Method: method, OnePacket: onePacket, Scheduler: "rr", RealIDs: []uint16{0, 1}}},
			Reals: []*dataplane.Real{{ID: 0, Resolved: true, Weight: 1}, {ID: 1, Resolved: true, Weight: 1}}}
		tb.Finish()
		return tb
	}
	hs := []pkt{{false, syn, 0}, {true, syn | ack, 0}, {false, ack, 0}}
	tests := []struct {
		name      string
		proto     uint8
		onePacket bool
		method    dataplane.Method
		before    []pkt
		last      pkt
		want      verdict
	}{
		{"mid-flow ACK", 6, false, dataplane.MethodNAT, hs, pkt{false, ack, time.Second}, split},
		{"SYN on an established connection", 6, false, dataplane.MethodNAT, hs, pkt{false, syn, time.Second}, split},
		{"SYN after a client RST", 6, false, dataplane.MethodNAT, append(hs, pkt{false, rst | ack, 0}), pkt{false, syn, time.Second}, nextConn},
		{"SYN after a server RST", 6, false, dataplane.MethodNAT, append(hs, pkt{true, rst, 0}), pkt{false, syn, time.Second}, nextConn},
		{"SYN|ACK after a RST", 6, false, dataplane.MethodNAT, append(hs, pkt{false, rst, 0}), pkt{false, syn | ack, time.Second}, split},
		{"SYN after the FIN exchange", 6, false, dataplane.MethodNAT, append(hs, pkt{false, fin | ack, 0}, pkt{true, fin | ack, 0}, pkt{false, ack, 0}), pkt{false, syn, time.Second}, nextConn},
		{"SYN after the client's FIN only", 6, false, dataplane.MethodNAT, append(hs, pkt{false, fin | ack, 0}), pkt{false, syn, time.Second}, split},
		{"DR: SYN after the client's FIN and ACK", 6, false, dataplane.MethodDR, []pkt{{false, syn, 0}, {false, ack, 0}, {false, fin | ack, 0}, {false, ack, 0}}, pkt{false, syn, time.Second}, split},
		{"DR: SYN after a RST", 6, false, dataplane.MethodDR, []pkt{{false, syn, 0}, {false, ack, 0}, {false, rst, 0}}, pkt{false, syn, time.Second}, nextConn},
		{"SYN after the idle timeout", 6, false, dataplane.MethodNAT, hs, pkt{false, syn, 16 * time.Minute}, nextConn},
		{"ACK after the idle timeout", 6, false, dataplane.MethodNAT, hs, pkt{false, ack, 16 * time.Minute}, split},
		{"datagram within the timeout", 17, false, dataplane.MethodNAT, []pkt{{false, 0, 0}, {true, 0, 0}}, pkt{false, 0, 299 * time.Second}, split},
		{"datagram after the timeout", 17, false, dataplane.MethodNAT, []pkt{{false, 0, 0}, {true, 0, 0}}, pkt{false, 0, 301 * time.Second}, nextConn},
		{"reply keeps a datagram flow alive", 17, false, dataplane.MethodNAT, []pkt{{false, 0, 0}, {true, 0, 200 * time.Second}}, pkt{false, 0, 200 * time.Second}, split},
		{"one_packet datagram", 17, true, dataplane.MethodNAT, []pkt{{false, 0, 0}}, pkt{false, 0, time.Millisecond}, nextConn},
	}
	cfg := loadConfig(t, "testdata/bench.toml") // default timeouts
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := newJudge(cfg, tables(tt.onePacket, tt.method))
			var f flowConn
			now := int64(time.Hour)
			for i, p := range tt.before {
				now += int64(p.at)
				if p.reply {
					j.reply(&f, tt.proto, p.flags, now)
				} else if v := j.client(&f, 0, tt.proto, p.flags, now); i == 0 && v != firstConn || i > 0 && v == split {
					t.Fatalf("packet %d: verdict %d", i, v)
				}
			}
			now += int64(tt.last.at)
			if got := j.client(&f, 1, tt.proto, tt.last.flags, now); got != tt.want {
				t.Errorf("verdict %d, want %d", got, tt.want)
			}
		})
	}
}
