package lab

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/govs/govs/internal/netnstest"
)

// TestRemoveStale: namespaces left by a process that is gone are removed; those of a live process,
// of another prefix and of names that do not follow the pattern stay.
func TestRemoveStale(t *testing.T) {
	netnstest.RequireRoot(t)
	// A pid no process has: count down from the top of the pid space.
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	top, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	pid := top - 1
	for processExists(pid) {
		pid--
	}
	dead := strconv.Itoa(pid)
	live := strconv.Itoa(os.Getppid())
	prefix := "govs-stale" + strconv.Itoa(os.Getpid()%10000)
	names := map[string]bool{ // name -> should be removed
		prefix + "-" + dead + "-abc123-cl":  true,
		prefix + "-" + dead + "-abc123-rs1": true,
		prefix + "-" + live + "-def456-cl":  false,
		prefix + "-" + dead + "-short-cl":   false,
		"govs-other-" + dead + "-abc123-cl": false,
	}
	for n := range names {
		if err := ipCmd("netns", "add", n); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ipCmd("netns", "del", n) })
	}
	removed, err := RemoveStale(prefix)
	if err != nil {
		t.Fatal(err)
	}
	for n, want := range names {
		if got := slices.Contains(removed, n); got != want {
			t.Errorf("%s: removed %v, want %v", n, got, want)
		}
		_, statErr := os.Stat("/run/netns/" + n)
		if exists := statErr == nil; exists == want {
			t.Errorf("%s: still there %v after RemoveStale", n, exists)
		}
	}
}
