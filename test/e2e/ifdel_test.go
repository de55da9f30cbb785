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

// TestAFXDPInterfaceChanged: a veth with fewer receive queues than its peer has transmit queues
// cannot take an XDP program, and govs says how to fix it. With io = "afxdp" govs sets its sockets up for the receive queues and
// MTU each interface has at start. When an operator adds a queue (ethtool -L) or raises the MTU
// beyond what its frames take, traffic on the new queue or in larger frames never reaches govs:
// govs must say so (a warning in the log, govs stats's interface_problems with what to do, the
// govs_interface_problems gauge), and say when it is over, once the interface is as it was.
func TestAFXDPInterfaceChanged(t *testing.T) {
	labtest.RequireRoot(t)
	if _, err := exec.LookPath("ethtool"); err != nil {
		t.Fatalf("this test changes veth queues with ethtool: apt-get install ethtool (%v)", err)
	}
	s := newTwoServiceSetupQueues(t, "nat", "govs-ifchg", "io = \"afxdp\"\n", 2)
	s.cfg.Workers = 1
	ethtool := func(args ...string) {
		t.Helper()
		if out, err := s.topo.Balancer.Command("ethtool", args...).CombinedOutput(); err != nil {
			t.Fatalf("ethtool %v: %v: %s", args, err, out)
		}
	}
	ip := func(args ...string) {
		t.Helper()
		if out, err := s.topo.Balancer.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	// l0 starts with one of its two queues in use, so that one can be added under govs. A veth's
	// XDP needs as many receive queues as its peer (the switch's lb0) transmits on.
	peer := func(args ...string) {
		t.Helper()
		if out, err := s.topo.Switch.Command("ethtool", args...).CombinedOutput(); err != nil {
			t.Fatalf("ethtool %v: %v: %s", args, err, out)
		}
	}
	// Before that, l0 alone at one queue: the kernel refuses the XDP program (ENOSPC), and govs
	// must say why in its one line.
	ethtool("-L", "l0", "rx", "1", "tx", "1")
	bad := launchGovsIn(t, s.topo.Balancer, s.cfg, nil)
	wantStartError(t, bad, "with l0 on fewer receive queues than its veth peer transmits on",
		"XDP program on l0", "no space left on device", "a veth needs as many receive queues as its peer has transmit queues")
	peer("-L", "lb0", "rx", "1", "tx", "1")
	g := startGovs(t, s.topo, s.cfg)
	get := func(when string) {
		t.Helper()
		if _, err := getOnce(s.topo.Client.HTTPClient(false), s.baseURL+"/", 5*time.Second); err != nil {
			t.Fatalf("HTTP through the VIP %s: %v", when, err)
		}
	}
	get("at start")
	problems := func(want string) {
		t.Helper()
		var st stats
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			st = g.mustStats()
			got := strings.Join(st.InterfaceProblems, "\n")
			if (want == "" && got == "") || (want != "" && strings.Contains(got, want)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("govs stats interface_problems = %q, want %q", st.InterfaceProblems, want)
			}
		}
		m, err := scrapeMetrics(s.topo.Balancer, defaultMetrics)
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := m.get("govs_interface_problems"); int(v) != len(st.InterfaceProblems) {
			t.Errorf("govs_interface_problems = %v, govs stats lists %d", v, len(st.InterfaceProblems))
		}
	}
	problems("")

	ethtool("-L", "l0", "rx", "2", "tx", "2")
	peer("-L", "lb0", "rx", "2", "tx", "2")
	problems("interface l0 has 2 receive queues, and govs reads the 1 it had at start: what arrives on the others goes to the kernel instead of govs; restart govs, or set the queues back (ethtool -L l0 combined 1, or rx 1 on a veth)")
	peer("-L", "lb0", "rx", "1", "tx", "1")
	ethtool("-L", "l0", "rx", "1", "tx", "1")
	problems("")
	get("after l0's queues were set back")

	ip("link", "set", "l1", "mtu", "2000")
	problems("interface l1 has MTU 2000, and govs's AF_XDP frames, sized at start, take an MTU of 1766 at most: the kernel drops larger frames; lower the MTU (ip link set l1 mtu 1766), or restart govs")
	ip("link", "set", "l1", "mtu", "1500")
	problems("")
	get("after l1's MTU was set back")

	g.stop()
	out := g.out.String()
	for _, want := range []string{"interface l0 has 2 receive queues", "interface l1 has MTU 2000", `interface problem gone`} {
		if !strings.Contains(out, want) {
			t.Errorf("govs's log does not say %q:\n%s", want, out)
		}
	}
}
