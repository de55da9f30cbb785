//go:build linux

package dataplane

import (
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// TestXDPWake: a worker that hands frames to another wakes it through its eventfd when it may be
// asleep, and writes nothing when it is awake (it finds the frames in its next round).
func TestXDPWake(t *testing.T) {
	fds := make([]int, 2)
	for i := range fds {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		fds[i] = fd
	}
	asleep := make([]atomic.Bool, 2)
	wake := xdpWake(asleep, fds)
	woken := func(i int) bool {
		var buf [8]byte
		n, _ := unix.Read(fds[i], buf[:])
		return n == 8
	}
	asleep[1].Store(true)
	wake(1)
	wake(0)
	if !woken(1) {
		t.Error("a worker that may sleep was not woken")
	}
	if woken(0) {
		t.Error("an awake worker's eventfd was written")
	}
}
