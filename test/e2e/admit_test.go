//go:build linux

package e2e

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/govs/govs/lab"
	"github.com/govs/govs/lab/labtest"
)

// newVIP4 is a second IPv4 VIP on the client net that only a reload configures.
var newVIP4 = netip.MustParseAddr("198.18.0.101")

// TestReloadAdmitsNewServices starts govs with one virtual server and reloads (SIGHUP) a file that
// adds a new port on the same VIP, a new IPv4 VIP and a new IPv6 VIP. New connections to each must
// work at once, in every receive mode (the latency and the throughput ring sets each have their own
// sockets, whose filters must all follow the reload), and a long-lived connection to the unchanged
// service must keep exchanging data before, during and after the reload, without a retransmission
// timeout.
func TestReloadAdmitsNewServices(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "nat", IPv6: true, Servers: 2, Prefix: "govs-admit"})
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	s := &setup{topo: topo, srvs: srvs, vip: topo.VIP4, reals: topo.ServerAddrs4}
	rs := func(addrs []netip.Addr, port uint16) []netip.AddrPort {
		return []netip.AddrPort{netip.AddrPortFrom(addrs[0], port), netip.AddrPortFrom(addrs[1], port)}
	}
	old := netip.AddrPortFrom(topo.VIP4, lab.HTTPPort)
	base := govsConfig{
		Interfaces: topo.BalancerIfaces,
		Workers:    2,
		VS:         []vsConfig{{old, "tcp", "rr", "nat", rs(topo.ServerAddrs4, lab.HTTPPort), []int{1, 1}, "", nil}},
	}
	added := []netip.AddrPort{
		netip.AddrPortFrom(topo.VIP4, lab.HTTPAltPort), // a new port on the running VIP
		netip.AddrPortFrom(newVIP4, lab.HTTPPort),      // a new IPv4 VIP
		netip.AddrPortFrom(topo.VIP6, lab.HTTPPort),    // a new IPv6 VIP
	}
	next := base
	next.VS = append([]vsConfig{}, base.VS...)
	for _, a := range added {
		reals := topo.ServerAddrs4
		if a.Addr().Is6() {
			reals = topo.ServerAddrs6
		}
		next.VS = append(next.VS, vsConfig{a, "tcp", "rr", "nat", rs(reals, a.Port()), []int{1, 1}, "", nil})
	}
	for _, mode := range []string{"auto", "latency", "throughput"} {
		t.Run(mode, func(t *testing.T) {
			g := startGovsMode(t, topo, base, mode, nil)
			defer g.stop()

			// A long-lived connection to the unchanged service, busy across the reload.
			c, err := s.dialFrom(topo.ClientAddr4, old)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			first, err := s.request(c)
			if err != nil {
				t.Fatalf("long-lived connection before the reload: %v", err)
			}
			before := rtoTimeouts(t, topo)
			var exchanges atomic.Int64
			var wg sync.WaitGroup
			stop := make(chan struct{})
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					case <-time.After(10 * time.Millisecond):
					}
					i, err := s.request(c)
					if err != nil {
						t.Errorf("long-lived connection during the reload, after %d exchanges: %v", exchanges.Load(), err)
						return
					}
					if i != first {
						t.Errorf("long-lived connection answered by %s, earlier by %s", srvs.Names[i], srvs.Names[first])
						return
					}
					exchanges.Add(1)
				}
			}()
			time.Sleep(100 * time.Millisecond)
			g.reload(next)
			time.Sleep(200 * time.Millisecond)
			close(stop)
			wg.Wait()
			atReload := exchanges.Load()
			if d := rtoTimeouts(t, topo) - before; d != 0 {
				t.Errorf("%d TCP retransmission timeouts on the long-lived connection across the reload: frames of an unchanged service were lost", d)
			}

			// Every added service takes new connections now, not after a restart.
			for _, target := range added {
				src := topo.ClientAddr4
				if target.Addr().Is6() {
					src = topo.ClientAddr6
				}
				used := map[int]bool{}
				for k := range 6 {
					nc, err := dialQuick(s, src, target)
					if err != nil {
						t.Fatalf("connection %d to %s, added by the reload: %v", k, target, err)
					}
					i, err := s.request(nc)
					nc.Close()
					if err != nil {
						t.Fatalf("connection %d to %s, added by the reload: %v", k, target, err)
					}
					used[i] = true
				}
				if len(used) != 2 {
					t.Errorf("6 connections to %s reached %d real servers, want both (rr)", target, len(used))
				}
			}
			for k := range 5 {
				i, err := s.request(c)
				if err != nil {
					t.Fatalf("long-lived connection, request %d after the reload: %v", k, err)
				}
				if i != first {
					t.Fatalf("long-lived connection answered by %s after the reload, by %s before", srvs.Names[i], srvs.Names[first])
				}
			}
			if atReload == 0 {
				t.Errorf("the long-lived connection exchanged nothing while govs reloaded")
			}
			t.Logf("%d exchanges on the long-lived connection across the reload", atReload)

			// A reload that removes the long-lived connection's real server (from every service that
			// had it): the connection drains (its replies are still admitted), new connections go
			// to the other real server.
			drain := next
			drain.VS = append([]vsConfig{}, next.VS...)
			keep := 1 - first
			for i, vs := range drain.VS {
				if vs.Address.Addr().Is4() && vs.Address.Port() == lab.HTTPPort {
					drain.VS[i].Reals = []netip.AddrPort{netip.AddrPortFrom(topo.ServerAddrs4[keep], lab.HTTPPort)}
					drain.VS[i].Weights = []int{1}
				}
			}
			g.reload(drain)
			for k := range 5 {
				i, err := s.request(c)
				if err != nil {
					t.Fatalf("long-lived connection, request %d after a reload removed its real server (it must drain): %v", k, err)
				}
				if i != first {
					t.Fatalf("draining connection answered by %s, by %s before", srvs.Names[i], srvs.Names[first])
				}
			}
			for k := range 4 {
				nc, err := dialQuick(s, topo.ClientAddr4, old)
				if err != nil {
					t.Fatalf("new connection %d after the real server's removal: %v", k, err)
				}
				i, err := s.request(nc)
				nc.Close()
				if err != nil {
					t.Fatalf("new connection %d after the real server's removal: %v", k, err)
				}
				if i != keep {
					t.Fatalf("new connection %d went to the removed real server %s", k, srvs.Names[i])
				}
			}
		})
	}
}

// dialQuick connects from src to target with a 3 s limit: a SYN the balancer does not admit is
// retransmitted after 1 s and again after 3 s, so the limit tells a refused admission from a slow one.
func dialQuick(s *setup, src netip.Addr, target netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := s.topo.Client.Do(func() error {
		d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		var err error
		c, err = d.Dial("tcp", target.String())
		return err
	})
	return c, err
}

// rtoTimeouts sums the TCP retransmission timeouts of the client and the real servers so far. A
// tail loss probe (after a few milliseconds without an answer, which a busy host can cause) is not
// one; a segment lost together with its probe is.
func rtoTimeouts(t *testing.T, topo *lab.Topology) int64 {
	t.Helper()
	var sum int64
	for _, ns := range append([]*lab.NS{topo.Client}, topo.Servers...) {
		m, err := ns.SNMP()
		if err != nil {
			t.Fatal(err)
		}
		v, ok := m["TcpExt.TCPTimeouts"]
		if !ok {
			t.Fatalf("no TcpExt.TCPTimeouts in %s's /proc/net/netstat", ns.Name)
		}
		sum += v
	}
	return sum
}
