//go:build linux

package neigh

import "github.com/govs/govs/internal/netnstest"

// Shorthands for the shared namespace helpers.
var (
	requireRoot = netnstest.RequireRoot
	ipCmd       = netnstest.IP
	newNetns    = netnstest.NewNetns
	sysctl      = netnstest.Sysctl
	inNetns     = netnstest.InNetns
)
