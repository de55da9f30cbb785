//go:build !linux

package daemon

// ifaceLocks claims nothing where govs's data plane does not run (it needs AF_PACKET, Linux only).
type ifaceLocks struct{}

const namespaceLock = ""

func lockInterfaces(names []string, ctl string) (*ifaceLocks, error) { return &ifaceLocks{}, nil }

func (l *ifaceLocks) close() {}
