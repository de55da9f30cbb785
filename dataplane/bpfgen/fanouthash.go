package bpfgen

import (
	"encoding/binary"
	"net/netip"
)

// FanoutMember is the fanout program's choice for a flow whose client side is client:port with
// IP protocol proto, hashed by rule, among members members (base 0), computed in Go: HA
// connection sync installs a synced connection in the worker whose socket the program sends the
// connection's frames to, and the worker that gets a datagram's fragments hands them to the
// worker that gets its flow. It covers frames the program hashes with their ports readable (no
// fragments, no IPv6 extension headers), which is every frame of an established TCP or UDP flow.
// With a protocol without ports it is the program's hash of a fragment without a sticky rule.
func FanoutMember(client netip.Addr, port uint16, proto uint8, rule HashRule, members int) int {
	if members <= 1 {
		return 0
	}
	client = client.Unmap()
	var b []byte
	var a4 [4]byte
	var a16 [16]byte
	if client.Is4() {
		a4 = client.As4()
		b = a4[:]
	} else {
		a16 = client.As16()
		b = a16[:]
	}
	var h uint32
	for w := 0; w < len(b)/4; w++ {
		v := binary.BigEndian.Uint32(b[4*w:])
		if rule.Sticky {
			v &= prefixMask(min(max(rule.Bits-32*w, 0), 32))
		}
		h ^= v
	}
	if !rule.Sticky && (proto == 6 || proto == 17 || proto == 132) {
		h ^= uint32(port)
	}
	h *= hashMul
	h ^= h >> 16
	return int(h % uint32(members))
}

// LocalMember is the fanout program's choice for a frame to a FullNAT local address with local
// port port (FanoutSpec.Locals), among members members (base 0): port mod members. A worker
// allocates only the local ports of its own residue class, so the replies of its connections
// reach it.
func LocalMember(port uint16, members int) int {
	if members <= 1 {
		return 0
	}
	return int(port) % members
}
