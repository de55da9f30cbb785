// Package labtest builds lab topologies for tests: a topology per test, torn down by the test's
// cleanup, and a root check that fails instead of skipping under CI=true. It is its own package so
// that the govs binary, which uses lab for its demo, does not link package testing.
package labtest

import (
	"testing"

	"github.com/govs/govs/internal/netnstest"
	"github.com/govs/govs/lab"
)

// RequireRoot skips tb when not running as root, except when CI=true, where a skipped integration
// test would hide a broken setup, so it fails instead.
func RequireRoot(tb testing.TB) { netnstest.RequireRoot(tb) }

// NewForTest builds a topology for tb (see RequireRoot) and tears it down in tb's cleanup, also
// when the test fails.
func NewForTest(tb testing.TB, opts lab.Options) *lab.Topology {
	tb.Helper()
	RequireRoot(tb)
	t, err := lab.New(opts)
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
