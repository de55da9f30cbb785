// Package sched picks the real server for a new connection with IPVS scheduler semantics, so that
// operators moving from ipvsadm/keepalived get the same spread of connections. Each data-plane
// worker owns its schedulers; what IPVS's one scheduler per virtual server would see across
// workers they share: the connection counts (Counts) and, for rr and wrr, the place in the list
// (Position).
package sched
