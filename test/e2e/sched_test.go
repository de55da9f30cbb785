//go:build linux

package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/govs/govs/lab"
	"github.com/govs/govs/lab/labtest"
)

// clientAddrs are extra client addresses, so several "clients" come from the one client namespace.
var clientAddrs = func() []netip.Addr {
	var out []netip.Addr
	for i := 20; i < 30; i++ {
		out = append(out, netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}))
	}
	return out
}()

// TestSchedulers checks, through the data plane with real HTTP, what the IPVS scheduler family
// promises operators: source hashing and persistence keep a client on one real server across
// connections while other clients spread, and thresholds stop and resume sending to a server.
func TestSchedulers(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "nat", Servers: 3, Prefix: "govs-e2e"})
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	for _, a := range clientAddrs {
		if out, err := topo.Client.Command("ip", "addr", "add", a.String()+"/24", "dev", lab.ClientIface).CombinedOutput(); err != nil {
			t.Fatalf("failed to add client address %s: %v %s", a, err, out)
		}
	}
	s := &setup{topo: topo, srvs: srvs, vip: topo.VIP4, reals: topo.ServerAddrs4}
	rs := func(port uint16) []netip.AddrPort {
		out := make([]netip.AddrPort, len(s.reals))
		for i, a := range s.reals {
			out[i] = netip.AddrPortFrom(a, port)
		}
		return out
	}
	http80 := netip.AddrPortFrom(s.vip, lab.HTTPPort)
	http8080 := netip.AddrPortFrom(s.vip, lab.HTTPAltPort)
	// Closed connections must leave the counts quickly for the threshold phase.
	short := "[timeouts]\ntcp_fin = \"1s\"\ntcp_time_wait = \"1s\"\ntcp_close = \"1s\"\ntcp_close_wait = \"1s\"\ntcp_last_ack = \"1s\"\n"
	cfg := govsConfig{
		Interfaces: topo.BalancerIfaces,
		Workers:    2,
		Tail:       short,
		VS: []vsConfig{
			{http80, "tcp", "sh", "nat", rs(lab.HTTPPort), []int{1, 1, 1}, "", nil},
			{http8080, "tcp", "rr", "nat", rs(lab.HTTPAltPort), []int{1, 1, 1},
				"persistence_timeout = \"60s\"\n", nil},
		},
	}
	g := startGovs(t, topo, cfg)

	for _, tc := range []struct {
		name   string
		target netip.AddrPort
	}{
		{"sh", http80},
		{"rr-persistent", http8080},
	} {
		t.Run(tc.name, func(t *testing.T) {
			used := map[int]bool{}
			for _, src := range clientAddrs {
				first := -1
				for i := 0; i < 8; i++ {
					c, err := s.dialFrom(src, tc.target)
					if err != nil {
						t.Fatalf("client %s connection %d: %v", src, i, err)
					}
					idx, err := s.request(c)
					c.Close()
					if err != nil {
						t.Fatalf("client %s connection %d: %v", src, i, err)
					}
					if first < 0 {
						first = idx
					} else if idx != first {
						t.Fatalf("client %s went to %s, then to %s: not sticky", src, s.srvs.Names[first], s.srvs.Names[idx])
					}
				}
				used[first] = true
			}
			if len(used) < 2 {
				t.Errorf("all %d clients went to one real server; other clients must spread", len(clientAddrs))
			}
		})
	}

	// govs list shows the persistent one as ipvsadm -Ln does, after its scheduler, without
	// widening the real servers' Forward column; -json has its timeout and netmask.
	t.Run("list-persistent", func(t *testing.T) {
		out, stderr, err := govsCLI("list", "-control", g.cfg.Socket)
		if err != nil {
			t.Fatalf("govs list: %v\n%s", err, stderr)
		}
		lines := strings.Split(out, "\n")
		want := regexp.MustCompile(`^TCP  ` + regexp.QuoteMeta(http8080.String()) + ` +rr persistent 60$`)
		found := false
		for i, l := range lines {
			if want.MatchString(l) {
				found = true
			}
			if i > 2 && strings.HasPrefix(l, "  -> ") && strings.Index(l, "Masq") != strings.Index(lines[2], "Forward") {
				t.Errorf("real server line %q: Masq not under Forward in\n%s", l, out)
			}
		}
		if !found {
			t.Errorf("govs list has no line matching %s:\n%s", want, out)
		}
		vs := g.mustStats().VirtualServers
		if vs[1].PersistenceTimeout != 60 || vs[1].PersistenceNetmask != 32 || vs[0].PersistenceTimeout != 0 {
			t.Errorf("govs stats -json: persistence %d/%d and %d, want 60/32 and 0",
				vs[1].PersistenceTimeout, vs[1].PersistenceNetmask, vs[0].PersistenceTimeout)
		}
	})

	t.Run("thresholds", func(t *testing.T) {
		// rs1 takes at most 2 connections (upper), and new ones again once it is below 1 (lower).
		next := cfg
		next.VS = []vsConfig{
			{http80, "tcp", "rr", "nat", rs(lab.HTTPPort), []int{1, 1, 1}, "",
				[]string{"  upper_threshold = 2\n  lower_threshold = 1\n"}},
			cfg.VS[1],
		}
		g.reload(next)
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		counts := make([]int, len(s.reals))
		for i := 0; i < 9; i++ {
			c, err := s.dialFrom(clientAddrs[i%len(clientAddrs)], http80)
			if err != nil {
				t.Fatal(err)
			}
			idx, err := s.request(c)
			if err != nil {
				t.Fatal(err)
			}
			counts[idx]++
			held = append(held, c) // keep it open: it counts against the threshold
		}
		if counts[0] > 2 {
			t.Fatalf("rs1 got %d of 9 open connections, above its upper_threshold 2 (per server %v)", counts[0], counts)
		}
		if counts[1]+counts[2] != 9-counts[0] {
			t.Fatalf("connections per server %v", counts)
		}
		if rs1 := g.mustStats().VirtualServers[0].RealServers[0]; !rs1.Overloaded {
			t.Errorf("rs1 holds %d connections at its upper_threshold 2, but stats says it is not overloaded", rs1.Connections)
		}
		for _, c := range held {
			c.Close()
		}
		held = nil
		// Wait until govs counts rs1's connections gone (FIN/TIME_WAIT timeouts are 1 s here).
		deadline := time.Now().Add(15 * time.Second)
		for {
			st := g.mustStats()
			if rs1 := st.VirtualServers[0].RealServers[0]; rs1.Connections == 0 {
				// Below its lower threshold, rs1 takes connections again, before any pick looks
				// at it: the connections' end cleared the flag (IPVS's unbind rule).
				if rs1.Overloaded {
					t.Errorf("rs1 has no connections left but stats still says it is overloaded")
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("rs1 still has %d connections 15 s after they closed", st.VirtualServers[0].RealServers[0].Connections)
			}
			time.Sleep(200 * time.Millisecond)
		}
		got := 0
		for i := 0; i < 6; i++ {
			c, err := s.dialFrom(clientAddrs[i], http80)
			if err != nil {
				t.Fatal(err)
			}
			idx, err := s.request(c)
			c.Close()
			if err != nil {
				t.Fatal(err)
			}
			if idx == 0 {
				got++
			}
		}
		if got == 0 {
			t.Fatalf("rs1 got none of 6 new connections after falling below its lower_threshold")
		}
	})
	t.Run("order-across-workers", func(t *testing.T) {
		// rr and wrr follow one order for the virtual server, whichever of the two workers takes
		// a connection (each has its own scheduler; they share the position), as IPVS's single
		// scheduler does: an operator opening connections one after another sees a, b, c, a, b, c.
		// The connections come from one address with new source ports, which the fanout spreads
		// over both workers (all 12 in one worker: a chance of 1 in 2048).
		defer g.reload(g.cfg) // the next subtest starts from the config the earlier ones left
		for _, tc := range []struct {
			sched   string
			weights []int
			cycle   string
		}{{"rr", []int{1, 1, 1}, "abc"}, {"wrr", []int{3, 2, 1}, "aababc"}} {
			next := cfg
			next.VS = []vsConfig{{http80, "tcp", tc.sched, "nat", rs(lab.HTTPPort), tc.weights, "", nil}, cfg.VS[1]}
			g.reload(next)
			var got strings.Builder
			for i := 0; i < 2*len(tc.cycle); i++ {
				c, err := s.dialFrom(clientAddrs[0], http80)
				if err != nil {
					t.Fatal(err)
				}
				idx, err := s.request(c)
				c.Close()
				if err != nil {
					t.Fatal(err)
				}
				got.WriteByte(byte('a' + idx))
			}
			// The order may start anywhere in the cycle (the position survives reloads).
			if !strings.Contains(strings.Repeat(tc.cycle, 4), got.String()) {
				t.Errorf("%s with weights %v over 2 workers: real servers %s, want a run of %s repeated", tc.sched, tc.weights, got.String(), tc.cycle)
			}
		}
	})
	t.Run("bad-reload", func(t *testing.T) {
		// An invalid file on SIGHUP is rejected with its file:line and the running config stays.
		good, err := os.ReadFile(g.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		bad := strings.Replace(string(good), `scheduler = "rr"`, `scheduler = "roundrobin"`, 1)
		if err := os.WriteFile(g.cfgPath, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(g.cfgPath, good, 0o644)
		before := strings.Count(g.out.String(), "reload rejected")
		if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); strings.Count(g.out.String(), "reload rejected") == before; {
			if time.Now().After(deadline) {
				t.Fatalf("govs did not reject the invalid config within 10s:\n%s", g.out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(g.out.String(), "govs.toml:") || !strings.Contains(g.out.String(), "roundrobin") {
			t.Errorf("the rejection does not name the file, line and value:\n%s", g.out.String())
		}
		c, err := s.dialFrom(clientAddrs[0], http8080)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := s.request(c); err != nil {
			t.Fatalf("govs stopped forwarding after a rejected reload: %v", err)
		}
		if st := g.mustStats(); st.VirtualServers[0].Scheduler != "rr" {
			t.Errorf("virtual server 0 runs %q after the rejected reload, want rr", st.VirtualServers[0].Scheduler)
		}
	})
	g.stop()
}

// dialFrom opens a TCP connection from the client namespace with source address src.
func (s *setup) dialFrom(src netip.Addr, target netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := s.topo.Client.Do(func() error {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		var err error
		c, err = d.Dial("tcp", target.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("failed to connect from %s to %s: %w", src, target, err)
	}
	return c, nil
}

// request sends one keep-alive GET / on c and returns which real server answered.
func (s *setup) request(c net.Conn) (int, error) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: vip\r\n\r\n"); err != nil {
		return -1, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return -1, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return -1, err
	}
	idx, ok := s.serverIndex(string(body))
	if !ok {
		return -1, fmt.Errorf("unexpected answer %q", strings.TrimSpace(string(body)))
	}
	return idx, nil
}
