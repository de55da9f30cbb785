package control

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/govs/govs/internal/netnstest"
)

// fakeHandler answers stats and, as a Commander, "echo" (its arguments back) and "fail".
type fakeHandler struct{}

func (fakeHandler) Status() Status { return Status{Version: "v-test", Ready: true} }

type commanding struct{ fakeHandler }

func (commanding) Command(ctx context.Context, name string, args json.RawMessage) (any, error) {
	switch name {
	case "echo":
		var a RealArgs
		if err := json.Unmarshal(args, &a); err != nil {
			return nil, err
		}
		return CtlResult{Message: a.Service + " " + a.Real, Generation: uint32(*a.Weight)}, nil
	case "fail":
		return nil, errors.New("unknown virtual server \"tcp/198.18.0.1:80\"; known: tcp/198.18.0.100:80")
	}
	return nil, errors.New("unknown command " + name)
}

func serveFor(t *testing.T, h Handler) string {
	t.Helper()
	return serveIn(t, t.TempDir(), h)
}

func serveIn(t *testing.T, dir string, h Handler) string {
	t.Helper()
	path := filepath.Join(dir, "govs.sock")
	s, err := NewServer(path, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return path
}

// TestCall: a command's arguments reach the daemon's Commander and its answer, or its error, the
// caller; a daemon without commands says which it knows.
func TestCall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	path := serveFor(t, commanding{})
	w := 7
	var res CtlResult
	if err := Call(ctx, path, "echo", RealArgs{Service: "tcp/198.18.0.100:80", Real: "[2001:2::11]:80", Weight: &w}, &res); err != nil {
		t.Fatal(err)
	}
	if res.Message != "tcp/198.18.0.100:80 [2001:2::11]:80" || res.Generation != 7 {
		t.Errorf("answer %+v", res)
	}
	err := Call(ctx, path, "fail", nil, nil)
	if err == nil || err.Error() != `unknown virtual server "tcp/198.18.0.1:80"; known: tcp/198.18.0.100:80` {
		t.Errorf("a failed command: %v, want the daemon's error as it wrote it", err)
	}
	if st, err := QueryStatus(ctx, path); err != nil || st.Version != "v-test" {
		t.Errorf("stats next to commands: %+v, %v", st, err)
	}

	path = serveFor(t, fakeHandler{})
	if err := Call(ctx, path, "zero", nil, nil); err == nil || !strings.Contains(err.Error(), `unknown command "zero"; known: stats, list`) {
		t.Errorf("a command to a handler without commands: %v", err)
	}
}

// TestSocketRootOnly: the control socket is mode 0600, and even when its mode lets another user
// connect, govs answers that user with "permission denied" and nothing else.
func TestSocketRootOnly(t *testing.T) {
	if os.Getenv("GOVS_CONTROL_CLIENT") != "" {
		return // the helper process's own run: see below
	}
	netnstest.RequireRoot(t)
	// A directory another user may enter (t.TempDir's parent is 0700).
	dir, err := os.MkdirTemp("", "govs-control-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := serveIn(t, dir, commanding{})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Fatalf("control socket mode %v, want 0600", m)
	}
	// As nobody (65534), through a copy of this test binary (TestSocketClient) where nobody may
	// run it.
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "client.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	asNobody := func() string {
		t.Helper()
		cmd := exec.Command(bin, "-test.run", "^TestSocketClient$", "-test.v")
		cmd.Env = append(os.Environ(), "GOVS_CONTROL_CLIENT="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the client as nobody: %v: %s", err, out)
		}
		return string(out)
	}
	if out := asNobody(); !strings.Contains(out, "permission denied") || strings.Contains(out, "answer:") {
		t.Errorf("nobody on a 0600 socket: %s", out)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if out := asNobody(); !strings.Contains(out, "the control socket answers root") || strings.Contains(out, "answer:") {
		t.Errorf("nobody on a socket opened to all: %s", out)
	}
}

// TestSocketClient is TestSocketRootOnly's client, run as another user; it does nothing in a
// normal test run.
func TestSocketClient(t *testing.T) {
	path := os.Getenv("GOVS_CONTROL_CLIENT")
	if path == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var st Status
	if err := Call(ctx, path, "stats", nil, &st); err != nil {
		t.Log("error:", err)
		return
	}
	t.Log("answer:", st.Version)
}

// TestServerLeavesOtherFiles: a control socket path that names a regular file or a directory is
// refused, and what is there stays (a typo'd path may name the configuration file); a stale
// socket left by an earlier run is replaced; Close removes the socket.
func TestServerLeavesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "govs.toml")
	if err := os.WriteFile(file, []byte("important\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "empty")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for path, kind := range map[string]string{file: "regular file", sub: "directory"} {
		if s, err := NewServer(path, fakeHandler{}); err == nil {
			s.Close()
			t.Errorf("NewServer(%s) on a %s: no error", path, kind)
		} else if want := "there is a " + kind + " at that path, not a socket"; !strings.Contains(err.Error(), want) {
			t.Errorf("NewServer(%s): %v, want one containing %q", path, err, want)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "important\n" {
		t.Errorf("the file at the refused path: %q, %v; want it untouched", b, err)
	}
	if _, err := os.Stat(sub); err != nil {
		t.Errorf("the directory at the refused path: %v", err)
	}

	// A socket nobody listens on (a killed govs's) is stale: replaced.
	path := filepath.Join(dir, "govs.sock")
	stale, err := NewServer(path, fakeHandler{})
	if err != nil {
		t.Fatal(err)
	}
	stale.ln.(interface{ SetUnlinkOnClose(bool) }).SetUnlinkOnClose(false)
	stale.Close()
	s, err := NewServer(path, fakeHandler{})
	if err != nil {
		t.Fatalf("NewServer over a stale socket: %v", err)
	}
	s.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket after Close: %v, want it gone", err)
	}
}
