package netnstest

import (
	"os"
	"testing"
)

// RequireRoot skips a test that needs root, except under CI=true where it must run.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (network namespaces, veth) and CI=true forbids skipping it")
	}
	t.Skip("needs root to create network namespaces; run with sudo (e.g. go test -exec sudo)")
}
