// Package sched picks the real server for a new connection with IPVS scheduler semantics, so that
// operators moving from ipvsadm/keepalived get the same spread of connections.
package sched
