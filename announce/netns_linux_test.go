//go:build linux

package announce

import "github.com/govs/govs/internal/netnstest"

// Shorthands for the shared namespace helpers.
var (
	requireRoot = netnstest.RequireRoot
	ipCmd       = netnstest.IP
	run         = netnstest.Run
	newNetns    = netnstest.NewNetns
	inNetns     = netnstest.InNetns
)
