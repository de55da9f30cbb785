//go:build !linux

package control

import "net"

// peerAllowed trusts the socket's mode (0600) where peer credentials are not read.
func peerAllowed(net.Conn) error { return nil }
