//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/govs/govs/lab"
	"github.com/govs/govs/lab/labtest"
)

// TestFullNATLocalAddressOnHost: a FullNAT local address (or a VIP) that is one of the balancer's own
// interface addresses (as an LVS FULLNAT operator would configure it) is refused, by
// `govs check-config` and by a reload (file:line and field, the running configuration kept), because
// govs would take that address's frames from the kernel: the balancer's own connections from it
// (health checks) would get no answer. The balancer's own HTTP request to a real server from that
// address still works after the refused reload; so does a service of the balancer's own on an
// address a refused reload wanted as a VIP.
func TestFullNATLocalAddressOnHost(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "fullnat", Servers: 1, Prefix: "govs-fnh"})
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	s := &setup{topo: topo, srvs: srvs, vip: topo.VIP4, reals: topo.ServerAddrs4}
	web := netip.AddrPortFrom(s.vip, lab.HTTPPort)
	real := netip.AddrPortFrom(s.reals[0], lab.HTTPPort)
	cfg := govsConfig{Interfaces: topo.BalancerIfaces, Workers: 1, VS: []vsConfig{
		{web, "tcp", "rr", "fullnat", []netip.AddrPort{real}, []int{1}, s.fullnatLocals(), nil},
	}}
	g := startGovs(t, topo, cfg)
	g.waitResolved(5 * time.Second)
	if _, err := s.requestFrom(0, web, 5*time.Second); err != nil {
		t.Fatalf("govs does not forward: %v", err)
	}

	own := topo.BalancerL1Addr4 // the balancer's address on the real servers' segment
	bad := cfg
	bad.Socket = g.cfg.Socket
	bad.VS = []vsConfig{cfg.VS[0]}
	bad.VS[0].Extra = fmt.Sprintf("local_addresses = [%q]\n", own.String())
	if err := os.WriteFile(g.cfgPath, []byte(bad.toml()), 0o644); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("virtual_server[1].local_addresses: %s is an address of interface ", own)
	out, _ := topo.Balancer.Command(govsPath, "check-config", g.cfgPath).CombinedOutput()
	if !strings.Contains(string(out), g.cfgPath+":") || !strings.Contains(string(out), want) {
		t.Errorf("govs check-config says:\n%s\nwant file:line: %s...", out, want)
	}
	rejects := strings.Count(g.out.String(), "reload rejected")
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); strings.Count(g.out.String(), "reload rejected") == rejects; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a reload with local address %s, the balancer's own, was not rejected:\n%s", own, g.out.String())
		}
	}
	if !strings.Contains(g.out.String(), want) {
		t.Errorf("the rejection does not name the field and the address:\n%s", g.out.String())
	}

	// The balancer's own connection from that address gets its answer, and the VIP still works.
	ownRequest := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var c net.Conn
		err := topo.Balancer.Do(func() error {
			d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(own, 0))}
			var err error
			c, err = d.DialContext(ctx, "tcp", real.String())
			return err
		})
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
			return err
		}
		b, err := io.ReadAll(c)
		if err == nil && !strings.HasPrefix(string(b), "HTTP/") {
			err = fmt.Errorf("answer %q", b)
		}
		return err
	}
	if err := ownRequest(); err != nil {
		t.Errorf("the balancer's own request from %s to %v: %v", own, real, err)
	}
	for i := range 5 {
		if _, err := s.requestFrom(0, web, 5*time.Second); err != nil {
			t.Fatalf("request %d through the VIP after the rejected reload: %v", i, err)
		}
	}

	// A VIP that is the balancer's own address on the clients' segment, the same way: refused,
	// and a service of the balancer's own on that address still answers the client.
	hostAddr := topo.BalancerL0Addr4
	ln, err := topo.Balancer.Listen("tcp", netip.AddrPortFrom(hostAddr, 2222).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "host\n")
			c.Close()
		}
	}()
	badVIP := cfg
	badVIP.Socket = g.cfg.Socket
	badVIP.VS = []vsConfig{cfg.VS[0], cfg.VS[0]}
	badVIP.VS[1].Address = netip.AddrPortFrom(hostAddr, lab.HTTPPort)
	if err := os.WriteFile(g.cfgPath, []byte(badVIP.toml()), 0o644); err != nil {
		t.Fatal(err)
	}
	rejects = strings.Count(g.out.String(), "reload rejected")
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); strings.Count(g.out.String(), "reload rejected") == rejects; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a reload with VIP %s, the balancer's own, was not rejected:\n%s", hostAddr, g.out.String())
		}
	}
	if want := fmt.Sprintf("virtual_server[2].address: %s is an address of interface ", hostAddr); !strings.Contains(g.out.String(), want) {
		t.Errorf("the rejection does not name the field and the address (%s...):\n%s", want, g.out.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := topo.Client.Dial(ctx, "tcp", netip.AddrPortFrom(hostAddr, 2222).String())
	if err != nil {
		t.Fatalf("the balancer's own service on %s: %v", hostAddr, err)
	}
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if b, err := io.ReadAll(c); err != nil || string(b) != "host\n" {
		t.Errorf("the balancer's own service on %s answered %q, %v", hostAddr, b, err)
	}
	c.Close()
	g.stop()
}
