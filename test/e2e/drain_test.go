//go:build linux

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/govs/govs/lab"
	"github.com/govs/govs/lab/labtest"
)

// TestShutdownDrain: a stand-alone govs told to stop goes on forwarding an established connection
// and refuses new ones, for up to shutdown_drain; it stops as soon as the last established
// connection closes, and at once on a second signal.
func TestShutdownDrain(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "nat", Servers: 3, Prefix: "govs-drain"})
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	var reals []netip.AddrPort
	for _, a := range topo.ServerAddrs4 {
		reals = append(reals, netip.AddrPortFrom(a, lab.HTTPPort))
	}
	vip := netip.AddrPortFrom(topo.VIP4, lab.HTTPPort).String()
	cfg := govsConfig{
		Top:        "shutdown_drain = \"6s\"\n",
		Interfaces: topo.BalancerIfaces,
		Workers:    2,
		VS:         []vsConfig{{netip.AddrPortFrom(topo.VIP4, lab.HTTPPort), "tcp", "rr", "nat", reals, []int{1, 1, 1}, "", nil}},
	}
	dial := func(timeout time.Duration) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return topo.Client.Dial(ctx, "tcp", vip)
	}
	request := func(c net.Conn) error {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: govs\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	}

	t.Run("last connection closes", func(t *testing.T) {
		g := startGovs(t, topo, cfg)
		c, err := dial(2 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := request(c); err != nil {
			t.Fatalf("request before SIGTERM: %v", err)
		}
		term := time.Now()
		if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(2 * time.Second); !strings.Contains(g.out.String(), "draining: refusing new connections"); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("govs does not say it drains:\n%s", g.out.String())
			}
		}
		if !strings.Contains(g.out.String(), "forwarding 1 established connection for up to") {
			t.Errorf("govs does not say it drains the one connection:\n%s", g.out.String())
		}
		for i := range 5 {
			if err := request(c); err != nil {
				t.Fatalf("request %d on the established connection while draining: %v", i, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if n, err := dial(time.Second); err == nil {
			n.Close()
			t.Error("a new connection succeeded while draining")
		}
		st := g.mustStats()
		if st.Drops["draining"] == 0 {
			t.Errorf("no drop counted as draining: %v", st.Drops)
		}
		c.Close()
		select {
		case <-g.done:
		case <-time.After(4 * time.Second):
			t.Fatalf("govs still running %v after SIGTERM, with no connection left", time.Since(term))
		}
		if g.waitErr != nil {
			t.Errorf("govs exited with %v", g.waitErr)
		}
		if !strings.Contains(g.out.String(), "drained: no established connections left") {
			t.Errorf("govs did not say it drained:\n%s", g.out.String())
		}
		t.Logf("stopped %v after SIGTERM", time.Since(term).Round(time.Millisecond))
	})

	t.Run("second signal", func(t *testing.T) {
		g := startGovs(t, topo, cfg)
		c, err := dial(2 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := request(c); err != nil {
			t.Fatal(err)
		}
		g.cmd.Process.Signal(syscall.SIGTERM)
		for deadline := time.Now().Add(2 * time.Second); !strings.Contains(g.out.String(), "draining: refusing"); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("govs does not drain:\n%s", g.out.String())
			}
		}
		second := time.Now()
		g.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-g.done:
		case <-time.After(2 * time.Second):
			t.Fatal("govs still draining 2s after a second signal")
		}
		if g.waitErr != nil || !strings.Contains(g.out.String(), "stopping at once") || !strings.Contains(g.out.String(), "draining cut short: 1 connection still established") {
			t.Errorf("exit %v; output:\n%s", g.waitErr, g.out.String())
		}
		t.Logf("stopped %v after the second signal", time.Since(second).Round(time.Millisecond))
	})
}
