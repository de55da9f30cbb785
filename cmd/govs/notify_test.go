package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listenNotify is a fake service manager's notification socket.
func listenNotify(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readNotify(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 4096)
	n, err := c.Read(b)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(b[:n])
}

func TestNotify(t *testing.T) {
	for _, name := range []string{
		filepath.Join(t.TempDir(), "notify"),
		"@govs-test-notify-" + filepath.Base(t.TempDir()), // abstract
	} {
		c := listenNotify(t, name)
		t.Setenv("NOTIFY_SOCKET", name)
		n, err := newNotifier()
		if err != nil {
			t.Fatal(err)
		}
		if v, set := os.LookupEnv("NOTIFY_SOCKET"); set {
			t.Errorf("NOTIFY_SOCKET=%q left for govs's children", v)
		}
		if err := n.notify("READY=1\nSTATUS=forwarding"); err != nil {
			t.Fatal(err)
		}
		if got := readNotify(t, c); got != "READY=1\nSTATUS=forwarding" {
			t.Errorf("%s: got %q", name, got)
		}
	}
}

func TestNotifyAbsentOrBroken(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n, err := newNotifier()
	if err != nil || n.notify("READY=1") != nil {
		t.Errorf("without NOTIFY_SOCKET: %v; want nothing done", err)
	}
	t.Setenv("NOTIFY_SOCKET", "relative/path")
	if _, err := newNotifier(); err == nil || !strings.Contains(err.Error(), "NOTIFY_SOCKET") {
		t.Errorf("relative NOTIFY_SOCKET: %v", err)
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody"))
	n, _ = newNotifier()
	var logged []string
	n.tell(func(f string, args ...any) { logged = append(logged, f) }, "READY=1")
	if len(logged) != 1 || !strings.HasPrefix(logged[0], "warning: ") {
		t.Errorf("a service manager that is not there: logged %q, want one warning", logged)
	}
}
