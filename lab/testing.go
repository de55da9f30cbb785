package lab

import (
	"os"
	"testing"
)

// RequireRoot skips tb when not running as root, except when CI=true, where a skipped integration
// test would hide a broken setup, so it fails instead.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	const hint = "needs root for network namespaces: run `go test -exec sudo ./...` or as root"
	if os.Getenv("CI") == "true" {
		tb.Fatal(hint + " (CI=true: failing instead of skipping)")
	}
	tb.Skip(hint)
}

// NewForTest builds a topology for tb (see RequireRoot) and tears it down in tb's cleanup, also
// when the test fails.
func NewForTest(tb testing.TB, opts Options) *Topology {
	tb.Helper()
	RequireRoot(tb)
	t, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := t.Close(); err != nil {
			tb.Errorf("failed to tear down %s: %v", t, err)
		}
	})
	return t
}
