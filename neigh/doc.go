// Package neigh keeps the next-hop MAC address of every real server known by asking the kernel's
// route and neighbour tables over netlink, so govs never runs an ARP/NDP cache of its own.
//
// For each target the Resolver asks the FIB for the outgoing interface and gateway (RTM_GETROUTE,
// `ip route get`), then reads the neighbour entry for the next hop on that interface. The kernel
// never sees govs' data-plane traffic (it leaves through an AF_PACKET ring), so nothing would make
// it resolve or re-verify those entries by itself: the Resolver asks for that explicitly with
// RTM_NEWNEIGH and NTF_USE (`ip neigh replace ADDR dev IF use`), which runs neigh_event_send() in
// the kernel. That moves a missing or FAILED entry to INCOMPLETE and a STALE one to DELAY/PROBE,
// exactly as if a packet had been routed to it. Measured on Linux 6.18: this resolves both IPv4
// (ARP) and IPv6 (NDP) next hops within a few milliseconds on a veth, so no hand-built ARP request
// or Neighbor Solicitation is needed.
//
// Changes reach the Resolver two ways: a netlink neighbour subscription (RTNLGRP_NEIGH) applies a
// new MAC as soon as the kernel learns it, and a one-second refresh re-reads routes and entries
// and kicks the kernel for anything unusable or STALE.
package neigh
