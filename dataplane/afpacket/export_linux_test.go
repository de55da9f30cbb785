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

// FrameRing reports whether the socket has a TPACKET_V2 RX ring (Config.FrameRing).
func (s *Socket) FrameRing() bool { return s.geo.frameRing }

// HardwareAddr returns the MAC address of the bound interface, which getsockname reports for a
// packet socket.
func (s *Socket) HardwareAddr() [6]byte {
	var hw [6]byte
	if sa, err := unix.Getsockname(s.fd); err == nil {
		if ll, ok := sa.(*unix.SockaddrLinklayer); ok {
			copy(hw[:], ll.Addr[:])
		}
	}
	return hw
}

// Next returns the next received frame, or ok=false when no block is ready: NextBatch one frame at
// a time, for the tests' loops. frame aliases the ring and is valid (and writable) only until the
// next call to Next or Close; so is meta, which the ring reuses. Never blocks.
func (s *Socket) Next() (frame []byte, meta *RxMeta, ok bool) {
	if s.geo.frameRing {
		return s.frx.next()
	}
	return s.rx.next()
}
