package sched

import (
	"encoding/binary"

	"github.com/govs/govs/flow"
)

// The hashing schedulers. dh and sh keep IPVS's 256-bucket tables and hash functions
// (ip_vs_dh.c, ip_vs_sh.c), so a flow lands where the kernel would put it for the same server list.

// hashTableSize is IP_VS_DH_TAB_SIZE and IP_VS_SH_TAB_SIZE (CONFIG_IP_VS_{DH,SH}_TAB_BITS = 8).
const hashTableSize = 256

// DestinationHashing is IPVS "dh": the flow's destination address picks one of 256 buckets, dealt
// to the servers in list order regardless of weight (ip_vs_dh.c). If that server is quiesced
// (weight 0) or overloaded the connection is refused, as in the kernel, unless the service has the
// sh flags, which govs extends to dh: with FlagSHFallback the buckets after it are tried in turn
// and the first usable server takes the flow; with FlagSHPort the destination port is hashed with
// the address (TCP, UDP, SCTP), so one destination's ports spread over the servers. A server that
// is not Available (its health check removed it, or its next hop is unresolved) is one keepalived
// would have deleted from the kernel's table, whose flows the kernel then hashes to the others: its
// flows always take the following buckets, flag or not, and keep the other servers' flows where
// they were. Otherwise a flow lands where the kernel would put it. Create it with New.
type DestinationHashing struct {
	buckets [hashTableSize]int32 // dest index; -1 = none
	n       int                  // len(dests) at the last Update
	flags   Flags
}

// SourceHashing is IPVS "sh": the flow's source address (and source port with FlagSHPort) picks one
// of 256 buckets, dealt to the servers in list order, each server getting as many consecutive buckets
// per round as its weight. With FlagSHFallback a quiesced or overloaded server's flows rehash to the
// next usable one; without it they are refused (ip_vs_sh.c). A server that is not Available takes
// the following buckets' servers always, as for dh. Create it with New.
type SourceHashing struct {
	buckets [hashTableSize]int32 // dest index; -1 = none
	n       int
	flags   Flags
}

var (
	_ Scheduler = (*DestinationHashing)(nil)
	_ Scheduler = (*SourceHashing)(nil)
)

// Name returns "dh".
func (*DestinationHashing) Name() string { return "dh" }

// Name returns "sh".
func (*SourceHashing) Name() string { return "sh" }

// Update deals the buckets to dests in list order, one each (ip_vs_dh_reassign).
func (s *DestinationHashing) Update(dests []Dest) {
	s.n = len(dests)
	for i := range s.buckets {
		if len(dests) == 0 {
			s.buckets[i] = -1
		} else {
			s.buckets[i] = int32(i % len(dests))
		}
	}
}

// Pick returns the server owning the flow's destination bucket, or with FlagSHFallback the first
// usable server in the buckets after it, or -1.
func (s *DestinationHashing) Pick(dests []Dest, f *flow.Tuple) int {
	if len(dests) != s.n {
		s.Update(dests) // the caller forgot Update; do not index out of range
	}
	if f == nil {
		f = &zeroFlow
	}
	var port uint32
	if s.flags&FlagSHPort != 0 && hasPorts(f.Proto) {
		port = uint32(f.DstPort)
	}
	// ip_vs_dh_hashkey: the multiplicative hash (Knuth's 2654435761) of the folded address (plus
	// the port with sh-port, as ip_vs_sh_hashkey adds it).
	h := uint32((uint64(foldAddr(&f.Dst)+port) * 2654435761) & (hashTableSize - 1))
	// sh-fallback: the following buckets in turn.
	return pickBucket(&s.buckets, dests, h, s.flags&FlagSHFallback != 0, func(off uint32) uint32 {
		return (h + off) & (hashTableSize - 1)
	})
}

// Update deals the buckets to dests in list order, Weight consecutive buckets each (at least one)
// per round (ip_vs_sh_reassign).
func (s *SourceHashing) Update(dests []Dest) {
	s.n = len(dests)
	p, count := 0, int32(0)
	for i := range s.buckets {
		if len(dests) == 0 {
			s.buckets[i] = -1
			continue
		}
		s.buckets[i] = int32(p)
		if count++; count >= dests[p].Weight {
			p, count = (p+1)%len(dests), 0
		}
	}
}

// Pick returns the server owning the flow's source bucket, or with FlagSHFallback the first usable
// server found by rehashing, or -1.
func (s *SourceHashing) Pick(dests []Dest, f *flow.Tuple) int {
	if len(dests) != s.n {
		s.Update(dests)
	}
	if f == nil {
		f = &zeroFlow
	}
	addr := foldAddr(&f.Src)
	var port uint16
	if s.flags&FlagSHPort != 0 && hasPorts(f.Proto) {
		port = f.SrcPort
	}
	ihash := shHash(addr, port, 0)
	// ip_vs_sh_get_fallback: walk the offsets starting from the original bucket.
	return pickBucket(&s.buckets, dests, ihash, s.flags&FlagSHFallback != 0, func(off uint32) uint32 {
		return shHash(addr, port, (off+ihash)%hashTableSize)
	})
}

// pickBucket returns the server owning bucket first if it is usable; else, with fallback, the first
// usable server of buckets next(0), next(1), ... next(255); else -1. An empty bucket (-1) refuses.
func pickBucket(buckets *[hashTableSize]int32, dests []Dest, first uint32, fallback bool, next func(off uint32) uint32) int {
	i := buckets[first]
	if i < 0 {
		return -1
	}
	if usable(&dests[i]) {
		return int(i)
	}
	if !fallback && dests[i].Available {
		return -1 // quiesced or overloaded: refused, as in the kernel
	}
	for off := range uint32(hashTableSize) {
		if j := buckets[next(off)]; j >= 0 && usable(&dests[j]) {
			return int(j)
		}
	}
	return -1
}

// shHash is ip_vs_sh_hashkey: hash_32(port + addr, 8) plus offset, modulo the table size.
func shHash(addr uint32, port uint16, offset uint32) uint32 {
	const goldenRatio32 = 0x61C88647 // include/linux/hash.h GOLDEN_RATIO_32
	return (offset + ((uint32(port)+addr)*goldenRatio32)>>(32-8)) & (hashTableSize - 1)
}

// foldAddr is IPVS's addr_fold: an IPv4 address as a number, or the XOR of an IPv6 address's four
// 32-bit words.
func foldAddr(a *[16]byte) uint32 {
	if isV4Mapped(a) {
		return binary.BigEndian.Uint32(a[12:])
	}
	return binary.BigEndian.Uint32(a[0:]) ^ binary.BigEndian.Uint32(a[4:]) ^
		binary.BigEndian.Uint32(a[8:]) ^ binary.BigEndian.Uint32(a[12:])
}

func isV4Mapped(a *[16]byte) bool {
	return binary.BigEndian.Uint64(a[0:]) == 0 && binary.BigEndian.Uint32(a[8:]) == 0xffff
}

// hasPorts reports whether proto (TCP, UDP, SCTP) carries ports, as ip_vs_sh_get_port and
// ip_vs_mh_get_port require before hashing one.
func hasPorts(proto uint8) bool {
	switch proto {
	case 6, 17, 132:
		return true
	}
	return false
}

// mix64 is the splitmix64 finalizer: a fixed, well-spread 64-bit mixer. Maglev and the lblc tables
// hash with it, so that the results are the same in every instance and every Go release (unlike
// hash/maphash).
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// hashAddrPort hashes an address and a port with a seed.
func hashAddrPort(a *[16]byte, port uint16, seed uint64) uint64 {
	h := mix64(seed ^ binary.BigEndian.Uint64(a[0:]))
	h = mix64(h ^ binary.BigEndian.Uint64(a[8:]))
	return mix64(h ^ uint64(port) ^ 0x5851f42d4c957f2d)
}
