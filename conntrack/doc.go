// Package conntrack keeps each data-plane worker's connections in fixed, preallocated, pointer-free
// arrays, so a table of ten million entries costs no GC scanning and no allocation per packet.
//
// There is one Table per worker and no lock: the PACKET_FANOUT BPF program hashes both directions
// of a connection (client→VIP and real server→client) to the same worker, so a Table only ever has
// one goroutine using it.
package conntrack
