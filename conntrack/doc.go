// Package conntrack keeps each data-plane worker's connections in fixed, pointer-free arrays, so a
// table of millions of entries costs no GC scanning and no allocation per packet.
package conntrack
