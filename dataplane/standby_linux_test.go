//go:build linux

package dataplane

import (
	"net"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"

	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/internal/netnstest"
)

// TestStandby runs an engine on two veths in a namespace, with both ring sets (rx_mode latency
// and auto read from a TPACKET_V2 and a TPACKETv3 socket per worker), and counts what its
// workers receive while it stands down and while it forwards.
func TestStandby(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.NewNetns(t, "standby")
	for _, p := range [][2]string{{"s0", "s1"}, {"t0", "t1"}} {
		netnstest.IP(t, "-n", ns, "link", "add", p[0], "type", "veth", "peer", "name", p[1])
		netnstest.IP(t, "-n", ns, "link", "set", p[0], "up")
		netnstest.IP(t, "-n", ns, "link", "set", p[1], "up")
	}
	for _, mode := range []string{RXModeAuto, RXModeLatency, RXModeThroughput} {
		t.Run(mode+"/reload adds a VIP", func(t *testing.T) {
			netnstest.InNetns(t, ns, func() {
				// The UDP DR service (the last spec) comes with a reload: the new socket filter must
				// reach the latency ring's sockets too, or its frames never arrive there.
				specs := standardSpecs()
				e, err := New(Config{Interfaces: []string{"s0", "t0"}, Workers: 2, RXMode: mode,
					Conntrack: conntrack.Config{MaxEntries: 1024}}, buildTables(1, specs[:len(specs)-1]...))
				if err != nil {
					t.Error(err)
					return
				}
				defer e.Close()
				if err := e.Publish(buildTables(2, specs...)); err != nil {
					t.Fatal(err)
				}
				if got := sendFrames(t, e, 20, 20); got != 20 {
					t.Errorf("the workers received %d frames to the added VIP, want 20", got)
				}
			})
		})
		t.Run(mode, func(t *testing.T) {
			netnstest.InNetns(t, ns, func() {
				e, err := New(Config{Interfaces: []string{"s0", "t0"}, Workers: 2, RXMode: mode, Standby: true,
					Conntrack: conntrack.Config{MaxEntries: 1024}}, buildTables(1, standardSpecs()...))
				if err != nil {
					t.Error(err)
					return
				}
				defer e.Close()
				send := func(n, want int) uint64 { return sendFrames(t, e, n, want) }
				if !e.Standby() {
					t.Error("Standby() = false for an engine started with Config.Standby")
				}
				if got := send(20, 0); got != 0 {
					t.Errorf("standing down: the workers received %d frames, want 0", got)
				}
				if err := e.SetStandby(false); err != nil {
					t.Fatal(err)
				}
				if got := send(20, 20); got != 20 {
					t.Errorf("forwarding: the workers received %d frames, want 20", got)
				}
				// A reload while standing down must not let frames in again.
				if err := e.SetStandby(true); err != nil {
					t.Fatal(err)
				}
				if err := e.Publish(buildTables(2, standardSpecs()...)); err != nil {
					t.Fatal(err)
				}
				if got := send(20, 0); got != 0 {
					t.Errorf("standing down after a reload: the workers received %d frames, want 0", got)
				}
				if err := e.SetStandby(false); err != nil {
					t.Fatal(err)
				}
				if got := send(20, 20); got != 20 {
					t.Errorf("forwarding again: the workers received %d frames, want 20", got)
				}
			})
		})
	}
}

// sendFrames sends n UDP frames to 198.18.0.200:4000 from s1 to s0 (in the namespace the caller
// runs in) and returns how many e's workers received meanwhile.
func sendFrames(t *testing.T, e *Engine, n, want int) uint64 {
	t.Helper()
	s0, err := net.InterfaceByName("s0")
	if err != nil {
		t.Fatal(err)
	}
	s1, err := net.InterfaceByName("s1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := packet.Listen(s1, packet.Raw, unix.ETH_P_ALL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := clientPkt("198.18.0.10:5000", "198.18.0.200:4000", 17, 0)
	p.srcMAC, p.dstMAC = [6]byte(s1.HardwareAddr), [6]byte(s0.HardwareAddr)
	f := build(t, p)
	before := e.Stats().Counters["rx_frames"]
	for range n {
		if _, err := c.WriteTo(f, &packet.Addr{HardwareAddr: s0.HardwareAddr}); err != nil {
			t.Errorf("send: %v", err)
		}
	}
	// Idle workers publish their counters within a poll timeout; a starved one (CI on a busy
	// machine) may take longer, so wait for the count the caller expects, but always long enough
	// for frames that should not arrive to show.
	start := time.Now()
	for {
		got := e.Stats().Counters["rx_frames"] - before
		waited := time.Since(start)
		if waited >= 3*pollTimeout*time.Millisecond && (got == uint64(want) || waited >= 5*time.Second) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}
