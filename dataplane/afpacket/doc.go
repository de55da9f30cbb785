// Package afpacket moves Ethernet frames between one interface and user space through
// AF_PACKET TPACKETv3 rings, so the data plane forwards without a syscall or a copy per frame.
package afpacket
