package main

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// notifier tells the service manager about govs run's state, as sd_notify(3) does: a datagram of
// newline-separated assignments (READY=1, STOPPING=1, STATUS=...) to the unix socket systemd names
// in $NOTIFY_SOCKET for a Type=notify unit (contrib/govs.service). Without $NOTIFY_SOCKET it does
// nothing.
type notifier struct {
	addr *net.UnixAddr // nil: no service manager asked
}

// newNotifier reads $NOTIFY_SOCKET and removes it from the environment, so the programs govs
// starts (exec health checks, notify commands) do not talk to the service manager in its name.
func newNotifier() (*notifier, error) {
	path := os.Getenv("NOTIFY_SOCKET")
	os.Unsetenv("NOTIFY_SOCKET")
	switch {
	case path == "":
		return &notifier{}, nil
	case strings.HasPrefix(path, "/"), strings.HasPrefix(path, "@"): // "@": Linux's abstract namespace, which Go's net spells the same way
		return &notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}, nil
	}
	return &notifier{}, fmt.Errorf("NOTIFY_SOCKET=%q is neither an absolute path nor an abstract socket (@name); the service manager will not hear that govs is ready", path)
}

// notify sends state, e.g. "READY=1\nSTATUS=...".
func (n *notifier) notify(state string) error {
	if n.addr == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("failed to reach the service manager at NOTIFY_SOCKET=%s: %w", n.addr.Name, err)
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("failed to tell the service manager %q: %w", state, err)
	}
	return nil
}

// tell is notify, logging a failure as a warning: govs runs on without the service manager's ear.
func (n *notifier) tell(logf func(format string, args ...any), state string) {
	if err := n.notify(state); err != nil {
		logf("warning: %v", err)
	}
}
