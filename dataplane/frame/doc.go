// Package frame parses and rewrites Ethernet frames in place, without copying or allocating, so the
// per-packet path of the data plane can classify and NAT a frame straight out of the ring.
package frame
