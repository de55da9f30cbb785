//go:build linux

package afpacket

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Wait blocks until an RX block is ready (ready=true) or the timeout passes (ready=false); a
// negative timeout waits without limit. It may report ready while Next still has frames of a held
// block; call Next until !ok. The tests' simple loops wait with it; the engine polls the socket's
// FD together with its own stop eventfd instead.
func (s *Socket) Wait(timeout time.Duration) (ready bool, err error) {
	fds := [1]unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}}
	var ts *unix.Timespec
	if timeout >= 0 {
		t := unix.NsecToTimespec(int64(timeout))
		ts = &t
	}
	for range 4 { // EINTR retries only
		_, err = unix.Ppoll(fds[:], ts, nil)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil && err != unix.EINTR {
		return false, fmt.Errorf("failed to wait for packets: %w", os.NewSyscallError("ppoll", err))
	}
	return fds[0].Revents&unix.POLLIN != 0, nil
}
