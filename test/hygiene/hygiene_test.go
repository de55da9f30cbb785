// Package hygiene checks what the repository itself holds: source, tests, small fixtures and the
// PGO profile, never a built binary or a large blob that every clone then carries forever.
package hygiene

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// maxTracked is the largest file the repository may hold; the PGO profile and the fixtures are far
// below it, a built govs (about 19 MB) far above.
const maxTracked = 2 << 20

func TestNoBuiltBinaryTracked(t *testing.T) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not a git checkout (%v): nothing to check", err)
	}
	root := strings.TrimSpace(string(out))
	ls := exec.Command("git", "ls-files", "-z")
	ls.Dir = root
	files, err := ls.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, name := range bytes.Split(files, []byte{0}) {
		if len(name) == 0 {
			continue
		}
		path := filepath.Join(root, string(name))
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the work tree, or a symlink
		}
		if fi.Size() > maxTracked {
			t.Errorf("%s is tracked and %d bytes: the repository holds no file over %d bytes (git rm --cached it)", name, fi.Size(), maxTracked)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 4)
		n, _ := f.Read(head)
		f.Close()
		if n == 4 && string(head) == "\x7fELF" {
			t.Errorf("%s is a tracked executable (ELF): builds go to bin/, which is ignored", name)
		}
	}
}
