//go:build linux

package netnstest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

var nsCounter atomic.Int64

// IP runs `ip args...`, bounded in time, and fails the test on error.
func IP(t testing.TB, args ...string) string {
	t.Helper()
	out, err := Run("ip", args...)
	if err != nil {
		t.Fatalf("ip %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// Run runs a command, bounded in time, and returns its combined output.
func Run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%w: %s", err, out)
	}
	return string(out), nil
}

// NewNetns creates a network namespace (removed at cleanup) with lo up and IPv6 DAD off, so
// addresses are usable at once.
func NewNetns(t testing.TB, tag string) string {
	t.Helper()
	name := fmt.Sprintf("govs-%s-%d-%d", tag, os.Getpid(), nsCounter.Add(1))
	IP(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := Run("ip", "netns", "del", name); err != nil {
			t.Logf("failed to delete netns %s: %v %s", name, err, out)
		}
	})
	IP(t, "-n", name, "link", "set", "lo", "up")
	Sysctl(t, name, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	return name
}

// NoIPv6 turns IPv6 off in netns ns, for tests that count frames: the kernel's own router
// solicitations and listener reports on a fresh link would otherwise arrive at random times.
func NoIPv6(t testing.TB, ns string) {
	t.Helper()
	Sysctl(t, ns, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
}

// Sysctl sets keys inside netns ns.
func Sysctl(t testing.TB, ns string, kv ...string) {
	t.Helper()
	args := append([]string{"netns", "exec", ns, "sysctl", "-qw"}, kv...)
	IP(t, args...)
}

// InNetns runs fn on a fresh OS thread that has entered netns name. The thread is never unlocked,
// so the runtime discards it when fn returns instead of reusing it in the wrong namespace.
func InNetns(t testing.TB, name string, fn func()) {
	t.Helper()
	Do(t, name, func() error { fn(); return nil })
}

// Do is InNetns for an fn that can fail: its error fails the test. Sockets fn creates stay in the
// namespace and may be used from any goroutine afterwards.
func Do(t testing.TB, name string, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := netns.GetFromName(name)
		if err != nil {
			errc <- fmt.Errorf("failed to open netns %s: %w", name, err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("failed to enter netns %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

var vethCounter atomic.Int64

// Veth creates a veth pair with end a in namespace nsA and end b in nsB, both up, named tag plus a
// counter (tag at most 8 characters: an interface name has 15). It goes with the namespaces.
func Veth(t testing.TB, nsA, nsB, tag string) (a, b string) {
	t.Helper()
	n := vethCounter.Add(1)
	a, b = fmt.Sprintf("%sa%d", tag, n), fmt.Sprintf("%sb%d", tag, n)
	IP(t, "-n", nsA, "link", "add", a, "type", "veth", "peer", "name", b, "netns", nsB)
	IP(t, "-n", nsA, "link", "set", a, "up")
	IP(t, "-n", nsB, "link", "set", b, "up")
	return a, b
}
