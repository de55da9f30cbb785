package ha

import (
	"fmt"
	"net"
	"net/netip"
)

// UDP is a Transport over one UDP socket bound to the node's listen address, so that the peers
// see heartbeats come from exactly the address they list.
type UDP struct {
	c *net.UDPConn
}

var _ Transport = (*UDP)(nil)

// ListenUDP opens the node's heartbeat socket on addr, which must be an address of this host.
func ListenUDP(addr netip.AddrPort) (*UDP, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("failed to listen for heartbeats on %s (is [ha] listen an address of this host?): %w", addr, err)
	}
	return &UDP{c: c}, nil
}

// Send implements Transport.
func (u *UDP) Send(b []byte, to netip.AddrPort) error {
	_, err := u.c.WriteToUDPAddrPort(b, to)
	return err
}

// Receive implements Transport.
func (u *UDP) Receive(b []byte) (int, netip.AddrPort, error) {
	n, from, err := u.c.ReadFromUDPAddrPort(b)
	return n, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), err
}

// Close implements Transport.
func (u *UDP) Close() error { return u.c.Close() }
