// Package announce makes the machine own VIPs on an Ethernet segment without configuring them on
// any interface: it answers ARP requests and IPv6 Neighbor Solicitations for them with the
// interface's MAC, and announces newly held VIPs with gratuitous ARP and unsolicited Neighbor
// Advertisements.
//
// Both protocols run over AF_PACKET sockets (github.com/mdlayher/packet), one per EtherType, each
// with a BPF filter attached before bind, rather than over github.com/mdlayher/arp's Client and
// github.com/mdlayher/ndp's Conn:
//   - arp.Client refuses an interface without an IPv4 address, and a VIP-only (or IPv6-only)
//     interface is a valid setup; the arp package is still used for the ARP wire format.
//   - ndp.Conn is an ICMPv6 socket: it needs a usable (non-tentative) link-local address, it only
//     sees solicitations that the kernel's IPv6 stack accepted, which requires joining each VIP's
//     solicited-node group at the IP layer, and it stops working when IPv6 is disabled on the
//     interface. A packet socket sees the frame whatever the kernel's IPv6 state, and the
//     Neighbor Advertisement (86 bytes, built in ndp.go) is sourced from the VIP itself.
//
// Because the VIP is not a local address, the kernel never answers for it, so there is no race
// with the kernel's own ARP/NDP. Each IPv6 VIP's solicited-node Ethernet group
// (33:33:ff:xx:xx:xx) is joined with PACKET_ADD_MEMBERSHIP so a NIC's multicast filter lets the
// solicitations in.
package announce
