//go:build !linux

package neigh

import (
	"fmt"
	"log/slog"
	"runtime"
)

// sysResolver is empty: resolution needs Linux netlink.
type sysResolver struct{}

// New is unimplemented outside Linux.
func New(interfaces []string, log *slog.Logger) (*Resolver, error) {
	return nil, fmt.Errorf("failed to start neighbour resolver: unimplemented on %s (needs Linux netlink)", runtime.GOOS)
}

// Close does nothing outside Linux.
func (r *Resolver) Close() error { return nil }
