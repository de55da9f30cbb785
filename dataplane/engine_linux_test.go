//go:build linux

package dataplane

import (
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/internal/netnstest"
)

// TestEngineStartReleases starts an engine (two workers on two interfaces, both ring sets) with
// fewer file descriptors allowed than it needs, one more each time until it starts: every failed
// start must give back every descriptor it took (sockets, eventfd, nftables) and leave neither a
// goroutine nor the guard's table behind; so must Close once it starts.
func TestEngineStartReleases(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.NewNetns(t, "start")
	netnstest.IP(t, "-n", ns, "link", "add", "s0", "type", "veth", "peer", "name", "s1")
	netnstest.IP(t, "-n", ns, "link", "set", "s0", "up")
	netnstest.IP(t, "-n", ns, "link", "set", "s1", "up")
	cfg := Config{
		Interfaces: []string{"s0", "s1"},
		Workers:    2,
		Conntrack:  conntrack.Config{MaxEntries: 1024},
		RXMode:     RXModeAuto,
	}
	tables := buildTables(1, standardSpecs()...)
	netnstest.Do(t, ns, func() error {
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return err
		}
		defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		fds0, err := openFDs()
		if err != nil {
			return err
		}
		goroutines0 := runtime.NumGoroutine()
		// Each attempt fails at a later descriptor; a bound on the attempts keeps a start that
		// never succeeds from looping.
		for extra := uint64(0); extra < 64; extra++ {
			l := lim
			l.Cur = uint64(fds0) + extra
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
				return err
			}
			e, err := New(cfg, tables)
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
				return err
			}
			if err == nil {
				if extra == 0 {
					t.Errorf("the engine started with no descriptor to spare: the test limits nothing")
				}
				if err := e.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			} else {
				t.Logf("%d descriptors to spare: %v", extra, err)
			}
			if fds, err := openFDs(); err != nil {
				return err
			} else if fds != fds0 {
				t.Errorf("%d descriptors to spare: %d descriptors open afterwards, %d before", extra, fds, fds0)
			}
			// Goroutines stopping after Close may take a moment to be gone.
			for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > goroutines0 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			if g := runtime.NumGoroutine(); g > goroutines0 {
				t.Errorf("%d descriptors to spare: %d goroutines afterwards, %d before", extra, g, goroutines0)
			}
			if ok, err := guardTableExists(); err != nil {
				return err
			} else if ok {
				t.Errorf("%d descriptors to spare: the nftables table %s is still there", extra, guardTable)
			}
			if err == nil || t.Failed() {
				return nil
			}
		}
		t.Errorf("the engine did not start with 64 descriptors to spare")
		return nil
	})
}

// openFDs counts this process's open file descriptors.
func openFDs() (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	return len(ents) - 1, err // less the directory being read
}

// guardTableExists reports whether govs's nftables table exists in the current namespace.
func guardTableExists() (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyNetdev)
	for _, tb := range tables {
		if tb.Name == guardTable {
			return true, err
		}
	}
	return false, err
}
