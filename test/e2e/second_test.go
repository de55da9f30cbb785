//go:build linux

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/govs/govs/lab"
	"github.com/govs/govs/lab/labtest"
)

// TestSecondInstance: a second `govs run` with the configuration of a running govs says in one line
// which govs already runs in this network namespace (its pid and control socket: the one to stop;
// not that the socket is in use, whose remedy, another socket path, would only lead to that line)
// and exits non-zero, without a panic and without touching the running govs: its control socket
// stays (the same socket, not a new one) and answers, and it keeps forwarding.
func TestSecondInstance(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "nat", Servers: 1, Prefix: "govs-e2e"})
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	s := &setup{topo: topo, srvs: srvs, vip: topo.VIP4, reals: topo.ServerAddrs4}
	http80 := netip.AddrPortFrom(s.vip, lab.HTTPPort)
	g := startGovs(t, topo, govsConfig{Interfaces: topo.BalancerIfaces, Workers: 1, VS: []vsConfig{
		{http80, "tcp", "rr", "nat", []netip.AddrPort{netip.AddrPortFrom(s.reals[0], lab.HTTPPort)}, []int{1}, "", nil},
	}})
	if _, err := s.requestFrom(0, http80, 5*time.Second); err != nil {
		t.Fatalf("govs does not forward: %v", err)
	}
	before, err := os.Stat(g.cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, "ip", "netns", "exec", topo.Balancer.Name, govsPath, "run", "-config", g.cfgPath)
	var stdout, stderr bytes.Buffer
	second.Stdout, second.Stderr = &stdout, &stderr
	err = second.Run()
	out := strings.TrimSpace(stderr.String())
	t.Logf("second govs: %v; stderr:\n%s\nstdout:\n%s", err, out, stdout.String())
	if ctx.Err() != nil {
		t.Fatalf("the second govs did not exit within 20s")
	}
	if second.ProcessState == nil || second.ProcessState.ExitCode() == 0 {
		t.Errorf("the second govs exited with %v, want a non-zero status", err)
	}
	if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
		t.Errorf("the second govs panicked")
	}
	want := fmt.Sprintf("govs run: another govs (pid %d, control socket %s) already runs in this network namespace; stop it first",
		g.cmd.Process.Pid, g.cfg.Socket)
	if lines := strings.Split(out, "\n"); len(lines) != 1 || !strings.HasPrefix(out, want) {
		t.Errorf("want the one line\n%s...\ngot:\n%s", want, out)
	}

	// The running govs is untouched: the same socket file, answering; forwarding as before.
	after, err := os.Stat(g.cfg.Socket)
	if err != nil {
		t.Fatalf("the running govs's control socket is gone: %v", err)
	}
	if a, b := after.Sys().(*syscall.Stat_t), before.Sys().(*syscall.Stat_t); a.Ino != b.Ino {
		t.Errorf("the control socket was replaced (inode %d, was %d)", a.Ino, b.Ino)
	}
	list, err := exec.Command(govsPath, "list", "-control", g.cfg.Socket).CombinedOutput()
	if err != nil || !strings.Contains(string(list), http80.String()) {
		t.Fatalf("govs list after the second start: %v\n%s", err, list)
	}
	for i := range 20 {
		if _, err := s.requestFrom(0, http80, 5*time.Second); err != nil {
			t.Fatalf("request %d after the second start: %v", i, err)
		}
	}
	g.alive()
	if st := g.mustStats(); st.DropsTotal != 0 {
		t.Errorf("drops after the second start: %v", nonZeroDrops(st))
	}
	g.stop()
}

// TestSecondInstanceOtherSocket: a second `govs run` on the same interfaces in the same network
// namespace, with its own control socket and metrics address, says in one line that the interface
// is served by the running govs (naming its pid and control socket) and exits non-zero before it
// touches anything: the running govs keeps forwarding, keeps its kernel guard (the nftables table
// the second would delete at its start and stop), and stops without warnings.
func TestSecondInstanceOtherSocket(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "nat", Servers: 1, Prefix: "govs-e2e"})
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	s := &setup{topo: topo, srvs: srvs, vip: topo.VIP4, reals: topo.ServerAddrs4}
	http80 := netip.AddrPortFrom(s.vip, lab.HTTPPort)
	cfg := govsConfig{Interfaces: topo.BalancerIfaces, Workers: 1, VS: []vsConfig{
		{http80, "tcp", "rr", "nat", []netip.AddrPort{netip.AddrPortFrom(s.reals[0], lab.HTTPPort)}, []int{1}, "", nil},
	}}
	g := startGovs(t, topo, cfg)
	if _, err := s.requestFrom(0, http80, 5*time.Second); err != nil {
		t.Fatalf("govs does not forward: %v", err)
	}
	if ok, err := guardTablePresent(topo.Balancer); err != nil || !ok {
		t.Fatalf("the running govs has no nftables table netdev govs (%v)", err)
	}

	// The same configuration but for [control] socket and [metrics] listen.
	dir := t.TempDir()
	cfg2 := cfg
	cfg2.Socket = filepath.Join(dir, "second.sock")
	cfg2.Tail = "[metrics]\nlisten = \"127.0.0.1:9283\"\n"
	cfgPath := filepath.Join(dir, "govs.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg2.toml()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, "ip", "netns", "exec", topo.Balancer.Name, govsPath, "run", "-config", cfgPath)
	// Should it start (the defect), stop it as an operator would, so that it does its own cleanup.
	second.Cancel = func() error { return second.Process.Signal(syscall.SIGTERM) }
	second.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	second.Stdout, second.Stderr = &stdout, &stderr
	err = second.Run()
	out := strings.TrimSpace(stderr.String())
	t.Logf("second govs: %v; stderr:\n%s\nstdout:\n%s", err, out, stdout.String())
	if ctx.Err() != nil {
		t.Errorf("the second govs was still running after 10s: it serves the interfaces the first serves")
	}
	if second.ProcessState == nil || second.ProcessState.ExitCode() == 0 {
		t.Errorf("the second govs exited with %v, want a non-zero status", err)
	}
	want := fmt.Sprintf("another govs (pid %d, control socket %s) already runs in this network namespace; stop it first: one govs per network namespace, whose kernel guard (the nftables table netdev govs) it owns",
		g.cmd.Process.Pid, g.cfg.Socket)
	if lines := strings.Split(out, "\n"); len(lines) != 1 || !strings.HasPrefix(out, "govs run: "+want) {
		t.Errorf("want the one line\ngovs run: %s\ngot:\n%s", want, out)
	}
	if _, err := os.Stat(cfg2.Socket); err == nil {
		t.Errorf("the second govs left its control socket %s behind", cfg2.Socket)
	}

	// The running govs is untouched: its guard is there, it forwards as before, and it stops cleanly.
	if ok, err := guardTablePresent(topo.Balancer); err != nil || !ok {
		t.Errorf("the running govs lost its nftables table netdev govs (%v)", err)
	}
	for i := range 20 {
		if _, err := s.requestFrom(0, http80, 5*time.Second); err != nil {
			t.Fatalf("request %d after the second start: %v", i, err)
		}
	}
	g.alive()
	if st := g.mustStats(); st.DropsTotal != 0 {
		t.Errorf("drops after the second start: %v", nonZeroDrops(st))
	}
	g.stop()
	if o := g.out.String(); strings.Contains(o, "warning") || strings.Contains(o, "failed") {
		t.Errorf("the running govs warned at its stop:\n%s", o)
	}
	if ok, err := guardTablePresent(topo.Balancer); err != nil || ok {
		t.Errorf("nftables table netdev govs still there after govs stopped (%v)", err)
	}
}

// guardTablePresent reports whether ns has govs's kernel guard, the nftables table netdev govs.
func guardTablePresent(ns *lab.NS) (bool, error) {
	var found bool
	err := ns.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tables, err := c.ListTablesOfFamily(nftables.TableFamilyNetdev)
		if err != nil {
			return err
		}
		for _, tb := range tables {
			found = found || tb.Name == "govs"
		}
		return nil
	})
	return found, err
}
