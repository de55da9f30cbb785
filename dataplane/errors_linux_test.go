//go:build linux

package dataplane

import (
	"errors"
	"fmt"
	"math"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// TestErrorfWraps: the data plane's errors read as before and wrap the errors they tell of, so
// errors.Is and errors.As see through them.
func TestErrorfWraps(t *testing.T) {
	err := errorf("worker %d on %s: %w", 3, "eth0", fmt.Errorf("failed to bind: %w", unix.EADDRNOTAVAIL))
	if got, want := err.Error(), "dataplane: worker 3 on eth0: failed to bind: "+unix.EADDRNOTAVAIL.Error(); got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
	if !errors.Is(err, unix.EADDRNOTAVAIL) {
		t.Errorf("errors.Is(%v, EADDRNOTAVAIL) = false", err)
	}
	if errors.Unwrap(errorf("no interfaces configured")) != nil {
		t.Errorf("an error without a cause wraps something")
	}
}

// TestNewWrapsCause: New's error for an interface that does not exist wraps the net package's.
func TestNewWrapsCause(t *testing.T) {
	_, err := New(Config{Interfaces: []string{"govs-nonexistent0"}, Workers: 1}, &Tables{})
	var op *net.OpError
	if err == nil || !errors.As(err, &op) {
		t.Fatalf("New on a missing interface: %v (%T); want an error wrapping *net.OpError", err, err)
	}
}

// TestCloseReturnsErrors: Close reports what it failed to close (here a wake-up descriptor that
// is not open), wrapping the syscall's error.
func TestCloseReturnsErrors(t *testing.T) {
	e := &Engine{}
	e.os.stopping = make(chan struct{})
	e.os.wakefd = math.MaxInt32 // never an open descriptor
	err := e.Close()
	if !errors.Is(err, unix.EBADF) {
		t.Fatalf("Close = %v; want an error wrapping EBADF", err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}
