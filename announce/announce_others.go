//go:build !linux

package announce

import (
	"fmt"
	"net/netip"
	"runtime"
)

// sysAnnouncer is empty: answering needs Linux packet sockets.
type sysAnnouncer struct{}

// New is unimplemented outside Linux.
func New(ifname string, logf func(format string, args ...any)) (*Announcer, error) {
	return nil, fmt.Errorf("failed to announce on %s: unimplemented on %s (needs Linux AF_PACKET)", ifname, runtime.GOOS)
}

// Close does nothing outside Linux.
func (a *Announcer) Close() error { return nil }

func (a *Announcer) joinSolicitedNode(netip.Addr)  {}
func (a *Announcer) leaveSolicitedNode(netip.Addr) {}
