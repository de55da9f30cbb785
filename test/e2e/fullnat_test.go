//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/govs/govs/lab"
)

// fullnatConns is how many TCP connections testFullNATConcurrent holds open at once, from one client.
const fullnatConns = 200

// fullnatLocals returns the local_addresses line of a FullNAT virtual server in s's family.
func (s *setup) fullnatLocals() string {
	locals := s.topo.LocalAddrs4
	if s.vip.Is6() {
		locals = s.topo.LocalAddrs6
	}
	q := make([]string, len(locals))
	for i, a := range locals {
		q[i] = fmt.Sprintf("%q", a.String())
	}
	return "local_addresses = [" + strings.Join(q, ", ") + "]\n"
}

// localAddrs is the FullNAT local addresses of s's family.
func (s *setup) localAddrs() []netip.Addr {
	if s.vip.Is6() {
		return s.topo.LocalAddrs6
	}
	return s.topo.LocalAddrs4
}

// testFullNATRoutes checks the premise of the FullNAT cases: the real servers' route to the client
// is not through the balancer (their default gateway is an address nobody has), so every answer
// that reaches the client went to a local address of govs first.
func (s *setup) testFullNATRoutes(t *testing.T) {
	client, gw := s.topo.ClientAddr4, s.topo.NoGateway4
	if s.vip.Is6() {
		client, gw = s.topo.ClientAddr6, s.topo.NoGateway6
	}
	for i, ns := range s.topo.Servers {
		out, err := ns.Command("ip", "route", "get", client.String()).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: ip route get %v: %v: %s", s.srvs.Names[i], client, err, out)
		}
		if !strings.Contains(string(out), "via "+gw.String()+" ") {
			t.Fatalf("%s routes to the client as %q, want via %v (not the balancer)", s.srvs.Names[i], out, gw)
		}
	}
}

// testFullNATConcurrent opens fullnatConns TCP connections from one client to the VIP and holds
// them all open, each answering a request, then checks on the real servers' side that every
// connection came from a local address of govs with a port no other live connection to the same
// real server had.
func (s *setup) testFullNATConcurrent(t *testing.T) {
	before := make([]int, len(s.srvs.Names))
	for i := range before {
		before[i] = len(s.srvs.Peers(i))
	}
	vip := netip.AddrPortFrom(s.vip, lab.HTTPPort).String()
	conns := make([]net.Conn, fullnatConns)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	})
	var wg sync.WaitGroup
	errs := make(chan error, fullnatConns)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := s.topo.Client.Dial(ctx, "tcp", vip)
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", vip); err != nil {
				errs <- err
				return
			}
			// Read the status line and headers, then the body's one line: the connection stays open.
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					errs <- fmt.Errorf("connection %d: %w", i, err)
					return
				}
				if line == "\r\n" {
					break
				}
			}
			if body, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(body, "rs") {
				errs <- fmt.Errorf("connection %d: body %q, %v", i, body, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed++; failed <= 5 {
			t.Error(err)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d concurrent connections failed", failed, fullnatConns)
	}
	total := 0
	for i := range s.srvs.Names {
		peers := s.srvs.Peers(i)[before[i]:]
		total += len(peers)
		seen := map[netip.AddrPort]bool{}
		for _, p := range peers {
			if !slices.Contains(s.localAddrs(), p.Addr()) {
				t.Fatalf("%s saw a connection from %v, not from a local address %v", s.srvs.Names[i], p, s.localAddrs())
			}
			if seen[p] {
				t.Fatalf("%s saw two live connections from %v", s.srvs.Names[i], p)
			}
			seen[p] = true
		}
		t.Logf("%s: %d connections from %d distinct local endpoints", s.srvs.Names[i], len(peers), len(seen))
	}
	if total != fullnatConns {
		t.Fatalf("the real servers accepted %d connections, want %d", total, fullnatConns)
	}

	// govs list -conns shows each connection's local endpoint: those the real servers saw.
	svc := "tcp/" + vip
	out, err := exec.Command(govsPath, "list", "-conns", "-json", "-control", s.govs.cfg.Socket, "-service", svc, "-max", "100000").Output()
	if err != nil {
		t.Fatalf("govs list -conns: %v", err)
	}
	var l struct {
		Conns []struct{ Client, Real, Local string }
	}
	if err := json.Unmarshal(out, &l); err != nil {
		t.Fatalf("govs list -conns -json: %v\n%s", err, out)
	}
	listed := map[string]bool{}
	for _, c := range l.Conns {
		a, err := netip.ParseAddrPort(c.Local)
		if err != nil || !slices.Contains(s.localAddrs(), a.Addr()) {
			t.Fatalf("govs list -conns: connection %+v has local %q, want a local address's endpoint", c, c.Local)
		}
		listed[c.Real+" "+c.Local] = true
	}
	for i, a := range s.reals {
		real := netip.AddrPortFrom(a, lab.HTTPPort).String()
		for _, p := range s.srvs.Peers(i)[before[i]:] {
			if !listed[real+" "+p.String()] {
				t.Fatalf("%s saw a connection from %v that govs list -conns does not show (%d listed)", s.srvs.Names[i], p, len(l.Conns))
			}
		}
	}
}

// testFullNATSources checks the sources the real servers saw over the whole run (HTTP and UDP):
// only local addresses of govs, never the client.
func (s *setup) testFullNATSources(t *testing.T) {
	n := 0
	for i := range s.srvs.Names {
		for _, p := range s.srvs.Peers(i) {
			n++
			if !slices.Contains(s.localAddrs(), p.Addr()) {
				t.Fatalf("%s saw a packet from %v, not from a local address %v", s.srvs.Names[i], p, s.localAddrs())
			}
		}
	}
	st := s.govs.mustStats()
	if d := st.Drops["fullnat_no_port"]; d != 0 {
		t.Errorf("fullnat_no_port = %d, want 0", d)
	}
	t.Logf("%d connections and datagrams, all from local addresses", n)
}

// testFullNATReload reloads the virtual servers with their second local address only: new
// connections then come to the real servers from it alone.
func (s *setup) testFullNATReload(t *testing.T) {
	keep := s.localAddrs()[1]
	cfg := s.cfg
	cfg.VS = slices.Clone(cfg.VS)
	for i := range cfg.VS {
		cfg.VS[i].Extra = fmt.Sprintf("local_addresses = [%q]\n", keep.String())
	}
	before := make([]int, len(s.srvs.Names))
	for i := range before {
		before[i] = len(s.srvs.Peers(i))
	}
	s.govs.reload(cfg)
	s.cfg = cfg
	const n = 30
	counts := s.shortConns(t, s.baseURL, n, 5)
	seen := 0
	for i := range s.srvs.Names {
		for _, p := range s.srvs.Peers(i)[before[i]:] {
			seen++
			if p.Addr() != keep {
				t.Fatalf("after the reload %s saw a connection from %v, want from %v only", s.srvs.Names[i], p, keep)
			}
		}
	}
	if seen != n {
		t.Fatalf("the real servers saw %d connections after the reload, want %d (per server %v)", seen, n, counts)
	}
}

// testFullNATLive holds a keep-alive connection across a reload that takes its local address out
// of every virtual server, and across one that changes the method to nat: each time its next
// requests are answered on the same connection by the same real server. The real server answers
// the connection's local address, so that needs govs to go on answering for it (the address
// drains) and to rewrite both ends by what the connection holds, not by the new method.
func (s *setup) testFullNATLive(t *testing.T) {
	orig := s.cfg
	for _, step := range []string{"local-removed", "method-nat"} {
		c := s.newStickyClient()
		first, err := c.get(s, s.baseURL)
		if err != nil {
			t.Fatalf("%s: first request: %v", step, err)
		}
		peers := s.srvs.Peers(first)
		local := peers[len(peers)-1].Addr()
		cfg := orig
		cfg.VS = slices.Clone(orig.VS)
		for i := range cfg.VS {
			switch step {
			case "local-removed":
				other := s.localAddrs()[0]
				if other == local {
					other = s.localAddrs()[1]
				}
				cfg.VS[i].Extra = fmt.Sprintf("local_addresses = [%q]\n", other.String())
			default:
				cfg.VS[i].Method, cfg.VS[i].Extra = "nat", ""
			}
		}
		kept := strings.Count(s.govs.out.String(), "removed local address kept")
		s.govs.reload(cfg)
		if n := strings.Count(s.govs.out.String(), "removed local address kept"); n == kept {
			t.Errorf("%s: govs did not log that it keeps %v for its connections", step, local)
		}
		for r := range 3 {
			i, err := c.get(s, s.baseURL)
			if err != nil {
				t.Fatalf("%s: request %d on the connection from %v after the reload: %v", step, r, local, err)
			}
			if i != first {
				t.Fatalf("%s: request %d answered by %s, the connection's by %s", step, r, s.srvs.Names[i], s.srvs.Names[first])
			}
		}
		if d := c.dials.Load(); d != 1 {
			t.Fatalf("%s: the client opened %d connections, want 1 (kept across the reload)", step, d)
		}
		c.hc.CloseIdleConnections()
		s.govs.reload(orig)
	}
	s.cfg = orig
}
