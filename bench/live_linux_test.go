package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/govs/govs/internal/netnstest"
)

// Shorthands for the shared namespace helpers.
var (
	needRoot = netnstest.RequireRoot
	ip       = func(t testing.TB, args ...string) { t.Helper(); netnstest.IP(t, args...) }
)

// rxPackets reads an interface's received-packet counter in namespace ns.
func rxPackets(t *testing.T, ns, ifname string) uint64 {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-s", "-j", "link", "show", ifname).Output()
	if err != nil {
		t.Fatalf("ip -s link: %v", err)
	}
	var links []struct {
		Stats64 struct {
			RX struct{ Packets uint64 } `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -s -j link: %v: %s", err, out)
	}
	return links[0].Stats64.RX.Packets
}

// TestLiveVeth transmits a generated capture into a veth pair inside a namespace of its own and
// checks the far end received every frame at the requested rate.
func TestLiveVeth(t *testing.T) {
	needRoot(t)
	ns := netnstest.NewNetns(t, "bench")
	// No IPv6 on the links: the kernel's own router and multicast listener messages would add
	// frames to the count.
	netnstest.NoIPv6(t, ns)
	ip(t, "-n", ns, "link", "add", "tx0", "type", "veth", "peer", "name", "rx0")
	ip(t, "-n", ns, "link", "set", "tx0", "up")
	ip(t, "-n", ns, "link", "set", "rx0", "up")

	c, _ := genCapture(t, GenConfig{Flows: 500, PacketsPerFlow: 4, TCPShare: 0.5, IPv6Share: 0.5, Seed: 4})
	tests := []struct {
		name string
		lc   LiveConfig
		want uint64
	}{
		{"paced 20k pps", LiveConfig{PPS: 20000, Loops: 2}, 2 * uint64(c.Len())},
		{"top speed", LiveConfig{TopSpeed: true, Loops: 3}, 3 * uint64(c.Len())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := rxPackets(t, ns, "rx0")
			rep := liveInNetns(t, ns, c, tt.lc)
			// Let the veth peer count the last frames.
			time.Sleep(50 * time.Millisecond)
			got := rxPackets(t, ns, "rx0") - before
			t.Logf("%+v; rx0 received %d", rep, got)
			if rep.Frames != tt.want || rep.Unsent != 0 || rep.TooLarge != 0 {
				t.Errorf("sent %d frames (unsent %d, too large %d), want %d", rep.Frames, rep.Unsent, rep.TooLarge, tt.want)
			}
			if got != tt.want {
				t.Errorf("rx0 received %d frames, want %d", got, tt.want)
			}
			if tt.lc.PPS > 0 {
				if rate := rep.PPS / tt.lc.PPS; rate < 0.85 || rate > 1.1 {
					t.Errorf("rate %.0f pps, want %.0f ± 15%%/10%%", rep.PPS, tt.lc.PPS)
				}
			}
		})
	}
}

// liveInNetns runs Live on a thread that joined namespace ns.
func liveInNetns(t *testing.T, ns string, c *Capture, lc LiveConfig) *LiveReport {
	t.Helper()
	lc.Interface = "tx0"
	var rep *LiveReport
	netnstest.Do(t, ns, func() (err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if rep, err = Live(ctx, c, lc); err != nil {
			return fmt.Errorf("Live: %w", err)
		}
		return nil
	})
	return rep
}
