package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// govsPath is the binary under test, built once by TestMain (or taken from $GOVS_BIN).
var govsPath string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// Without root every test skips (labtest.RequireRoot); do not make the build a reason to fail then.
	if os.Geteuid() != 0 && os.Getenv("CI") != "true" {
		return m.Run()
	}
	if p := os.Getenv("GOVS_BIN"); p != "" {
		govsPath = p
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "govs-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: failed to create a temp dir for the govs binary: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	govsPath = filepath.Join(dir, "govs")
	cmd := exec.Command("go", "build", "-o", govsPath, "./cmd/govs")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: FAILED to build govs (`CGO_ENABLED=0 go build ./cmd/govs` in %s): %v\n%s\n", root, err, out)
		return 1
	}
	return m.Run()
}

// repoRoot is the directory of the main module's go.mod.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("failed to find the repository root with `go env GOMOD`: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("failed to find the repository root: not inside a Go module (run from the repository)")
	}
	return filepath.Dir(mod), nil
}
