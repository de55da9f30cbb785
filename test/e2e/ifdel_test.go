//go:build linux

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/govs/govs/lab/labtest"
)

// TestInterfaceDeleted: an interface deleted under a running govs (the server side's l1, with its
// switch port) is left out, on AF_PACKET and on AF_XDP: govs does not spin on its dead socket
// (under a quarter of a CPU over 2 s; a worker polling it woke at once, every time, and took
// 130-155%), it keeps taking new tables (a runtime weight change applies: with AF_XDP every
// table change failed on the severed XDP program), and it stops cleanly.
func TestInterfaceDeleted(t *testing.T) {
	labtest.RequireRoot(t)
	for _, io := range []string{"afpacket", "afxdp"} {
		t.Run(io, func(t *testing.T) {
			s := newTwoServiceSetup(t, "nat", "govs-ifdel", "io = \""+io+"\"\n")
			s.cfg.Workers = 1
			g := startGovs(t, s.topo, s.cfg)
			if out, err := s.topo.Switch.Command("ip", "link", "del", "lb1").CombinedOutput(); err != nil {
				t.Fatalf("ip link del lb1: %v: %s", err, out)
			}
			time.Sleep(time.Second)
			wantIdleCPU(t, g, "l1 was deleted")
			// A runtime weight change publishes new tables (a reload of this file is refused: it
			// names l1, which is gone).
			svc, rs := "tcp/"+s.cfg.VS[0].Address.String(), s.cfg.VS[0].Reals[1].String()
			out, err := exec.Command(govsPath, "ctl", "weight", "-config", g.cfgPath, svc, rs, "0").CombinedOutput()
			if err != nil {
				t.Fatalf("govs ctl weight %s %s 0 after l1 was deleted: %v\n%s", svc, rs, err, out)
			}
			found := false
			for _, vs := range g.mustStats().VirtualServers {
				for _, r := range vs.RealServers {
					if vs.Protocol == "tcp" && r.Address == rs {
						found = true
						if r.Weight != 0 {
							t.Errorf("%s %s has weight %d after govs ctl weight 0", svc, rs, r.Weight)
						}
					}
				}
			}
			if !found {
				t.Errorf("govs stats lists no %s %s", svc, rs)
			}
			g.alive()
			g.stop()
		})
	}
}

// TestLinkFlap: a data-plane interface that goes down and comes back up (l1, the server side)
// leaves govs as it was, on AF_PACKET and on AF_XDP: no spinning on the error its packet sockets
// got (under a quarter of a CPU over 2 s; before, poll(2) reported the error at once, every time,
// and the workers never slept again), and connections through it work.
func TestLinkFlap(t *testing.T) {
	labtest.RequireRoot(t)
	for _, io := range []string{"afpacket", "afxdp"} {
		t.Run(io, func(t *testing.T) {
			s := newTwoServiceSetup(t, "nat", "govs-flap", "io = \""+io+"\"\n")
			s.cfg.Workers = 1
			g := startGovs(t, s.topo, s.cfg)
			for _, state := range []string{"down", "up"} {
				if out, err := s.topo.Balancer.Command("ip", "link", "set", "l1", state).CombinedOutput(); err != nil {
					t.Fatalf("ip link set l1 %s: %v: %s", state, err, out)
				}
				time.Sleep(200 * time.Millisecond)
			}
			time.Sleep(time.Second)
			wantIdleCPU(t, g, "l1 went down and up")
			var err error
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
				if _, err = getOnce(s.topo.Client.HTTPClient(false), s.baseURL+"/", 2*time.Second); err == nil {
					break
				}
			}
			if err != nil {
				t.Fatalf("HTTP through the VIP after l1 came back: %v", err)
			}
			g.stop()
		})
	}
}

// wantIdleCPU wants govs, without traffic, to use under a quarter of a CPU over 2 s after what
// happened.
func wantIdleCPU(t *testing.T, g *govsProc, after string) {
	t.Helper()
	before := cpuTicks(t, g.cmd.Process.Pid)
	time.Sleep(2 * time.Second)
	if used := cpuTicks(t, g.cmd.Process.Pid) - before; used > 50 { // 100 ticks a second
		t.Errorf("govs used %d%% of a CPU over the 2 s after %s", used/2, after)
	}
}

// cpuTicks returns the user and system time process pid has used, in clock ticks (1/100 s).
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return u + s
}
