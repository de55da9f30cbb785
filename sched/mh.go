package sched

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/govs/govs/flow"
)

// DefaultMHTableSize is the Maglev lookup table size used when Options.MHTableSize is 0: a prime
// comfortably above 100 × the number of servers of any sane service, the paper's rule for a balance
// within about 1%.
const DefaultMHTableSize = 65537

// maxMHTableSize bounds the table (4 bytes per entry, per worker) at 16 MiB.
const maxMHTableSize = 1<<22 - 3 // 4194301, a prime

// Seeds of the Maglev hashes. They are part of the on-the-wire contract between govs instances: two
// instances pick the same server for a flow only if they hash with the same seeds. Never change them.
const (
	mhSeedOffset = 0x6d61676c65762d6f // "maglev-o"
	mhSeedSkip   = 0x6d61676c65762d73 // "maglev-s"
	mhSeedFlow   = 0x6d61676c65762d66 // "maglev-f"
)

// Maglev is IPVS "mh", Maglev hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software
// Network Load Balancer", NSDI 2016, §3.4): each server with a positive weight fills the slots of a
// lookup table of prime size M in the order of its own permutation of the slots, taking turns in
// proportion to its weight, and a flow's source address (and source port with FlagMHPort) hashes to
// a slot. The table is a pure function of the set of servers (address, port, weight) and M, not of
// their order in the list, so every govs instance with the same configuration picks the same server
// for the same flow; adding or removing one of N servers moves about 1/N of the flows.
//
// A server that is unavailable or overloaded keeps its slots, so health flaps do not reshuffle
// anyone else. An unavailable server's flows (its health check removed it, or its next hop is
// unresolved: keepalived would have deleted it from the kernel's table) are rehashed until they
// hit a usable server; an overloaded or quiesced one's are refused, or with FlagMHFallback
// rehashed too (ip_vs_mh.c). Create it with New.
//
// Each instance holds its own table (4·M bytes); Update rebuilds it.
type Maglev struct {
	table []int32 // M slots, dest index; -1 = none (no server has a positive weight)
	m     uint64
	n     int // len(dests) at the last Update
	flags Flags
}

var _ Scheduler = (*Maglev)(nil)

func newMaglev(o Options) *Maglev {
	m := o.MHTableSize
	if m == 0 {
		m = DefaultMHTableSize
	}
	return &Maglev{table: make([]int32, m), m: uint64(m), flags: o.Flags}
}

// Name returns "mh".
func (*Maglev) Name() string { return "mh" }

// checkMHTableSize reports whether m can be a Maglev table size.
func checkMHTableSize(m int) error {
	if m < 2 || m > maxMHTableSize || !isPrime(m) {
		return fmt.Errorf("invalid mh table size %d: use a prime between 2 and %d, well above 100 × the number of real servers (default %d)", m, maxMHTableSize, DefaultMHTableSize)
	}
	return nil
}

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// Update rebuilds the lookup table for dests (Maglev's Populate, with weights).
func (s *Maglev) Update(dests []Dest) {
	s.n = len(dests)
	fillMaglev(s.table, dests)
}

// fillMaglev fills table with the Maglev population for dests.
//
// Servers take turns in a canonical order (by address, then port), so the result does not depend on
// the list order. Weights: at each turn a server earns its weight in credit, and places one slot per
// maxWeight of credit, so the heaviest servers place a slot every turn and the others in proportion.
func fillMaglev(table []int32, dests []Dest) {
	m := uint64(len(table))
	for i := range table {
		table[i] = -1
	}
	type member struct {
		idx          int32
		offset, skip uint64
		next         uint64 // how far along its permutation the server is
		weight       int64
		credit       int64
	}
	var members []member
	var maxW int64
	for i := range dests {
		d := &dests[i]
		if d.Weight <= 0 {
			continue
		}
		members = append(members, member{
			idx:    int32(i),
			offset: hashAddrPort(&d.Addr, d.Port, mhSeedOffset) % m,
			skip:   hashAddrPort(&d.Addr, d.Port, mhSeedSkip)%(m-1) + 1,
			weight: int64(d.Weight),
		})
		maxW = max(maxW, int64(d.Weight))
	}
	if len(members) == 0 {
		return
	}
	slices.SortStableFunc(members, func(a, b member) int {
		da, db := &dests[a.idx], &dests[b.idx]
		if c := slices.Compare(da.Addr[:], db.Addr[:]); c != 0 {
			return c
		}
		return cmp.Compare(da.Port, db.Port)
	})
	// Duplicate servers (same address and port) would fight for the same slots; the one listed
	// first keeps its place in the sort, the others are skipped.
	members = slices.CompactFunc(members, func(a, b member) bool {
		return dests[a.idx].Addr == dests[b.idx].Addr && dests[a.idx].Port == dests[b.idx].Port
	})
	filled := uint64(0)
	for {
		for k := range members {
			p := &members[k]
			p.credit += p.weight
			if p.credit < maxW {
				continue
			}
			p.credit -= maxW
			// The permutation of a server is offset + j*skip mod M; M prime makes it visit every
			// slot, so the search ends.
			c := (p.offset + p.next*p.skip) % m
			for table[c] >= 0 {
				p.next++
				c = (p.offset + p.next*p.skip) % m
			}
			table[c] = p.idx
			p.next++
			if filled++; filled == m {
				return
			}
		}
	}
}

// Pick returns the server of the flow's slot, or with FlagMHFallback the first usable server found
// by rehashing, or -1.
func (s *Maglev) Pick(dests []Dest, f *flow.Tuple) int {
	if len(dests) != s.n {
		s.Update(dests)
	}
	if f == nil {
		f = &zeroFlow
	}
	var port uint16
	if s.flags&FlagMHPort != 0 && hasPorts(f.Proto) {
		port = f.SrcPort
	}
	h := hashAddrPort(&f.Src, port, mhSeedFlow)
	i := s.table[h%s.m]
	if i < 0 {
		return -1
	}
	if usable(&dests[i]) {
		return int(i)
	}
	if s.flags&FlagMHFallback == 0 && dests[i].Available {
		return -1 // quiesced or overloaded: refused, as in the kernel
	}
	// Rehash with successive offsets (ip_vs_mh_get_fallback), but only when someone can take the
	// flow, so an all-down service costs one pass over dests instead of M hashes.
	anyUsable := false
	for k := range dests {
		if usable(&dests[k]) {
			anyUsable = true
			break
		}
	}
	if !anyUsable {
		return -1
	}
	for off := uint64(1); off < s.m; off++ {
		j := s.table[mix64(h+off)%s.m]
		if j >= 0 && usable(&dests[j]) {
			return int(j)
		}
	}
	return -1
}
