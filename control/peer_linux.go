//go:build linux

package control

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// peerAllowed refuses a client that is neither root nor the user govs runs as. The socket's mode
// (0600) keeps others out already; this also covers the moment between its creation and the
// chmod, and a mode changed by hand.
func peerAllowed(c net.Conn) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return fmt.Errorf("failed to check who is asking: %w", err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return fmt.Errorf("failed to check who is asking: %w", err)
	}
	if cerr != nil {
		return fmt.Errorf("failed to check who is asking: %w", cerr)
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
		return fmt.Errorf("permission denied: the control socket answers root (and the user govs runs as) only; run this as root")
	}
	return nil
}
