//go:build linux

package lab

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// openNetns returns an fd referring to the named network namespace created by `ip netns add`.
func openNetns(name string) (int, error) {
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("failed to open network namespace %q (is it created by `ip netns add`?): %w",
			name, os.NewSyscallError("open", err))
	}
	return fd, nil
}

func closeNetns(fd int) error { return unix.Close(fd) }

// doInNetns runs fn on a fresh OS thread that has joined the namespace fd.
//
// The goroutine locks its thread and never unlocks it: setns(2) changes only the calling thread, and
// a goroutine that exits while locked makes the runtime terminate that thread instead of handing a
// thread in a foreign namespace to other goroutines (see runtime.LockOSThread). Sockets created by
// fn stay in the namespace for their whole life and may be used from any goroutine afterwards.
func doInNetns(fd int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("failed to enter network namespace: %w", os.NewSyscallError("setns", err))
			return
		}
		errc <- fn()
	}()
	return <-errc
}
