package bench

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/govs/govs/config"
)

var update = flag.Bool("update", false, "rewrite testdata captures")

func loadConfig(t testing.TB, path string) *config.Config {
	t.Helper()
	cfg, err := config.Load(path, config.LoadOptions{})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

func genCapture(t testing.TB, gc GenConfig) (*Capture, GenStats) {
	t.Helper()
	var buf bytes.Buffer
	st, err := Generate(&buf, gc)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	c, err := ReadCapture(&buf)
	if err != nil {
		t.Fatalf("ReadCapture: %v", err)
	}
	if c.Len() != st.Packets {
		t.Fatalf("capture has %d frames, Generate wrote %d", c.Len(), st.Packets)
	}
	return c, st
}

// accounted checks that every packet fed was forwarded or dropped with a reason.
func accounted(t *testing.T, rep *Report) {
	t.Helper()
	if got := rep.Forwarded + rep.Replied + rep.ICMPErrors + rep.DroppedTotal; got != rep.Packets {
		t.Errorf("forwarded %d + replied %d + icmp %d + dropped %d = %d, want packets %d (drops %v)",
			rep.Forwarded, rep.Replied, rep.ICMPErrors, rep.DroppedTotal, got, rep.Packets, rep.Dropped)
	}
}

func TestReplayGenerated(t *testing.T) {
	cfg := loadConfig(t, "testdata/bench.toml")
	const flows = 3000
	tests := []struct {
		name    string
		workers int
		loops   int
		replies ReplyMode
		ppf     int
	}{
		{"1 worker simulate", 1, 1, ReplySimulate, 8},
		{"2 workers simulate", 2, 1, ReplySimulate, 8},
		{"3 workers drop replies", 3, 1, ReplyDrop, 9},
		{"2 workers 2 loops", 2, 2, ReplySimulate, 8},
		{"1 worker short flows", 1, 1, ReplySimulate, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, st := genCapture(t, GenConfig{Flows: flows, PacketsPerFlow: tt.ppf, TCPShare: 0.7, IPv6Share: 0.3, Seed: 3})
			rep, err := Replay(c, ReplayConfig{Config: cfg, Workers: tt.workers, Loops: tt.loops, Replies: tt.replies})
			if err != nil {
				t.Fatal(err)
			}
			accounted(t, rep)
			if rep.DroppedTotal != 0 {
				t.Errorf("dropped %d (%v), want 0", rep.DroppedTotal, rep.Dropped)
			}
			if rep.StickyViolations != 0 {
				t.Errorf("sticky_violations = %d, want 0", rep.StickyViolations)
			}
			if rep.Flows != flows {
				t.Errorf("flows = %d, want %d", rep.Flows, flows)
			}
			loops := uint64(tt.loops)
			if want := uint64(st.ClientPackets) * loops; rep.Forwarded != want {
				t.Errorf("forwarded = %d, want every client packet: %d", rep.Forwarded, want)
			}
			if want := uint64(st.ServerPackets) * loops; rep.Replied+rep.Skipped != want {
				t.Errorf("replied %d + skipped %d, want every server packet: %d", rep.Replied, rep.Skipped, want)
			}
			if tt.replies == ReplyDrop && rep.Replied != 0 {
				t.Errorf("replied = %d with replies dropped", rep.Replied)
			}
			// The schedulers' shares: rr gives every real server of a service the same number of
			// flows per worker (±1), wrr 3:1 (± one round per worker).
			byService := map[string][]RealReport{}
			var total uint64
			for _, r := range rep.Reals {
				byService[r.Service] = append(byService[r.Service], r)
				total += r.Flows
			}
			if total != uint64(flows)*loops {
				t.Errorf("flows over real servers = %d, want %d", total, uint64(flows)*loops)
			}
			slack := uint64(tt.workers) * loops
			for svc, rs := range byService {
				var wsum, fsum uint64
				for _, r := range rs {
					wsum += uint64(r.Weight)
					fsum += r.Flows
				}
				for _, r := range rs {
					want := fsum * uint64(r.Weight) / wsum
					if diff := int64(r.Flows) - int64(want); diff > int64(slack*uint64(r.Weight)) || -diff > int64(slack*uint64(r.Weight)) {
						t.Errorf("%s %s: %d flows, want %d (weight %d of %d) ± %d", svc, r.Address, r.Flows, want, r.Weight, wsum, slack*uint64(r.Weight))
					}
				}
			}
		})
	}
}

func TestReplayRewriteDst(t *testing.T) {
	cfg := loadConfig(t, "testdata/bench.toml")
	c, st := genCapture(t, GenConfig{Flows: 500, PacketsPerFlow: 6, TCPShare: 1, Seed: 5, Server4: mustAddr("198.18.7.7")})
	rep, err := Replay(c, ReplayConfig{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Forwarded != 0 || rep.Dropped["no_service"] == 0 {
		t.Fatalf("without rewrite: forwarded %d, drops %v; want everything dropped as no_service", rep.Forwarded, rep.Dropped)
	}
	rep, err = Replay(c, ReplayConfig{Config: cfg, RewriteDst4: mustAddr("198.18.0.100"), RewriteDst6: mustAddr("2001:2::100")})
	if err != nil {
		t.Fatal(err)
	}
	accounted(t, rep)
	if rep.Forwarded != uint64(st.ClientPackets) || rep.DroppedTotal != 0 || rep.StickyViolations != 0 {
		t.Errorf("with rewrite: forwarded %d (want %d), drops %v, sticky %d", rep.Forwarded, st.ClientPackets, rep.Dropped, rep.StickyViolations)
	}
}

func TestReplayOut(t *testing.T) {
	cfg := loadConfig(t, "testdata/bench.toml")
	c, _ := genCapture(t, GenConfig{Flows: 50, PacketsPerFlow: 6, TCPShare: 1, Seed: 9})
	var out bytes.Buffer
	rep, err := Replay(c, ReplayConfig{Config: cfg, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	sent, err := ReadCapture(&out)
	if err != nil {
		t.Fatalf("reading -out: %v", err)
	}
	if want := int(rep.Forwarded + rep.Replied); sent.Len() != want {
		t.Errorf("-out holds %d frames, want forwarded+replied = %d", sent.Len(), want)
	}
	// Some frame is a SYN NATed to port 8080 and sent to a real server's MAC; replies leave from
	// port 80 of the VIP.
	syns := 0
	for i := 0; i < sent.Len(); i++ {
		f, _ := sent.Frame(i)
		pkt := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil {
			t.Fatalf("frame %d is not TCP: %v", i, pkt)
		}
		if _, toReal := realOfMAC(f); toReal {
			if tcp.DstPort != 8080 {
				t.Errorf("frame %d to a real server has port %d, want 8080", i, tcp.DstPort)
			}
			if tcp.SYN && !tcp.ACK {
				syns++
			}
		} else if tcp.SrcPort != 80 {
			t.Errorf("reply %d has source port %d, want the VIP's 80", i, tcp.SrcPort)
		}
	}
	if syns != 50 {
		t.Errorf("%d SYNs sent to real servers, want 50", syns)
	}
}

func TestReplayAllocs(t *testing.T) {
	cfg := loadConfig(t, "testdata/bench.toml")
	c, _ := genCapture(t, GenConfig{Flows: 20000, PacketsPerFlow: 8, TCPShare: 0.8, IPv6Share: 0.2, Seed: 2, Size: SizeDist{kind: 'f', lo: 64, hi: 64}})
	rep, err := Replay(c, ReplayConfig{Config: cfg, Loops: 2})
	if err != nil {
		t.Fatal(err)
	}
	// A few allocations come from the replay's own bookkeeping goroutines; per packet that must
	// round to nothing.
	if rep.AllocsPerPacket > 0.001 {
		t.Errorf("allocs_per_packet = %v, want 0", rep.AllocsPerPacket)
	}
	t.Logf("%.1f ns/packet, %.2f Mpps (baseline copy %.1f ns; shared machine), %.1f frames per batch", rep.NsPerPacket, rep.PPS/1e6, rep.BaselineNsPerPacket, rep.FramesPerBatch)
	// Each round is fed port by port, as the engine drains its rings, so batches are long even
	// though the capture interleaves requests and replies (fed in capture order they averaged 5).
	if rep.FramesPerBatch < 16 || rep.FramesPerBatch > 32 {
		t.Errorf("frames_per_batch = %.1f, want between 16 and 32", rep.FramesPerBatch)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestReplayMalformed replays hand-made captures of broken and unusual frames: nothing panics and
// every frame is forwarded or dropped with a reason.
func TestReplayMalformed(t *testing.T) {
	cfg := loadConfig(t, "testdata/bench.toml")
	files := []string{"testdata/malformed.pcap", "testdata/fragments.pcap", "testdata/vlan.pcap"}
	if *update {
		writeMalformed(t)
	}
	for _, path := range files {
		t.Run(path, func(t *testing.T) {
			c, err := ReadCaptureFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestReplayMalformed -update to create it)", err)
			}
			for _, workers := range []int{1, 2} {
				rep, err := Replay(c, ReplayConfig{Config: cfg, Workers: workers})
				if err != nil {
					t.Fatal(err)
				}
				accounted(t, rep)
				if rep.Packets != uint64(c.Len()) {
					t.Errorf("fed %d of %d frames", rep.Packets, c.Len())
				}
				t.Logf("workers %d: forwarded %d replied %d drops %v", workers, rep.Forwarded, rep.Replied, rep.Dropped)
			}
		})
	}
}

func writePcap(t *testing.T, path string, frames [][]byte, wire []int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for i, b := range frames {
		n := len(b)
		if wire != nil && wire[i] > n {
			n = wire[i]
		}
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: genEpoch, CaptureLength: len(b), Length: n}, b); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReplayKeepsFrames: a replay with several workers regroups the capture's bytes by worker
// (groupByWorker); every frame must still read as it was, and a second replay of the same capture
// with another worker count must give the same counts.
func TestReplayKeepsFrames(t *testing.T) {
	cfg := loadConfig(t, "testdata/bench.toml")
	c, st := genCapture(t, GenConfig{Flows: 2000, PacketsPerFlow: 8, TCPShare: 0.7, IPv6Share: 0.3, Seed: 5})
	old := groupSpan
	groupSpan = 1000 // several stretches, the last one short
	t.Cleanup(func() { groupSpan = old })
	before := make([][]byte, c.Len())
	for i := range before {
		b, _ := c.Frame(i)
		before[i] = bytes.Clone(b)
	}
	for _, workers := range []int{3, 2, 1} {
		rep, err := Replay(c, ReplayConfig{Config: cfg, Workers: workers, Loops: 1, Replies: ReplySimulate})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Forwarded != uint64(st.ClientPackets) || rep.DroppedTotal != 0 || rep.StickyViolations != 0 {
			t.Errorf("%d workers: forwarded %d of %d, dropped %d, sticky %d", workers, rep.Forwarded, st.ClientPackets, rep.DroppedTotal, rep.StickyViolations)
		}
		for i := range before {
			if b, _ := c.Frame(i); !bytes.Equal(b, before[i]) {
				t.Fatalf("after a replay with %d workers, frame %d changed", workers, i)
			}
		}
	}
}

// TestReplayFullNAT replays generated flows through the bench services switched to FullNAT (the
// port-0 DR service stays): the simulated replies go to the local endpoint each connection got,
// so every client packet is forwarded and every server packet of a FullNAT service replied, with
// no drop and no sticky violation, with one and two workers.
func TestReplayFullNAT(t *testing.T) {
	b, err := os.ReadFile("testdata/bench.toml")
	if err != nil {
		t.Fatal(err)
	}
	src := strings.ReplaceAll(string(b), "method = \"nat\"\nreal_server = [{address = \"198.19",
		"method = \"fullnat\"\nlocal_addresses = [\"198.19.0.2\", \"198.19.0.3\"]\nreal_server = [{address = \"198.19")
	src = strings.ReplaceAll(src, "method = \"nat\"\nreal_server = [{address = \"[2001",
		"method = \"fullnat\"\nlocal_addresses = [\"2001:2:0:2::2\"]\nreal_server = [{address = \"[2001")
	if strings.Contains(src, `"nat"`) {
		t.Fatalf("a NAT service is left in the FullNAT config:\n%s", src)
	}
	cfg, err := config.Parse([]byte(src), "fullnat.toml", config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, workers := range []int{1, 2} {
		c, st := genCapture(t, GenConfig{Flows: 2000, PacketsPerFlow: 8, TCPShare: 0.7, IPv6Share: 0.3, Seed: 5})
		rep, err := Replay(c, ReplayConfig{Config: cfg, Workers: workers, Loops: 1, Replies: ReplySimulate})
		if err != nil {
			t.Fatal(err)
		}
		accounted(t, rep)
		if rep.DroppedTotal != 0 || rep.StickyViolations != 0 {
			t.Errorf("%d workers: dropped %d (%v), sticky violations %d; want none", workers, rep.DroppedTotal, rep.Dropped, rep.StickyViolations)
		}
		if rep.Forwarded != uint64(st.ClientPackets) || rep.Replied+rep.Skipped != uint64(st.ServerPackets) || rep.Replied == 0 {
			t.Errorf("%d workers: forwarded %d of %d client packets, replied %d + skipped %d of %d server packets",
				workers, rep.Forwarded, st.ClientPackets, rep.Replied, rep.Skipped, st.ServerPackets)
		}
		t.Logf("%d workers: %d packets, forwarded %d, replied %d, skipped (DR) %d, %.0f ns per packet in the data plane",
			workers, rep.Packets, rep.Forwarded, rep.Replied, rep.Skipped, rep.NsPerPacketDataplane)
	}
}
