package conntrack

import (
	"encoding/binary"
	"math/bits"
)

// realAddrs interns the real server addresses of a table's entries: an entry keeps a 2-byte handle
// instead of 16 bytes, which makes an entry 64 bytes, one cache line, so a lookup of an entry not
// in cache costs one memory access instead of two or three. A handful of real servers serve
// millions of connections, so the addresses themselves stay in cache.
//
// The table owns the handles and counts references to them: a handle lives while an entry holds
// it. They do not depend on the data plane's real server IDs, which a reload may give to another
// address while connections to the old one still live.
//
// A handle names a real server address alone, or for a FullNAT entry (ctlFullNAT) the triple of the
// real server's address, its port and the local address the connection has towards it: the
// entry's own port field then holds the local port (see Conn). A handful of real servers and
// local addresses serve millions of connections, so the triples stay few too: a table holds
// maxRealAddrs of them, real server addresses included, whatever its size, and an entry that
// needs one more is refused with ErrNoHandle (a FullNAT service with 256 local addresses and 256
// real servers takes them all).
type realAddrs struct {
	addr  [][16]byte // by handle
	port  []uint16   // by handle: a FullNAT triple's real server port, else 0
	local [][16]byte // by handle: a FullNAT triple's local address, else zero
	refs  []uint32   // entries holding each handle; 0: free
	index []uint32   // linear probing over addresses: handle+1, 0 empty; a power of two, at least 2*len(addr)
	free  []uint16   // free handles below used, a stack
	used  int        // handles below used have been given out
	mask  uint32
	seed  uint64
}

// maxRealAddrs is the most distinct real server addresses one table holds at once (handles are
// uint16), as many as there are real server IDs.
const maxRealAddrs = 1 << 16

// realAddrsSize returns, for a table of maxEntries entries, the handles its realAddrs holds and
// the slots of its index.
func realAddrsSize(maxEntries int) (handles, slots int) {
	n := min(maxEntries, maxRealAddrs)
	return n, 1 << bits.Len(uint(2*n-1))
}

// realAddrsBytes returns the bytes newRealAddrs allocates for a table of maxEntries entries.
func realAddrsBytes(maxEntries int) int {
	n, slots := realAddrsSize(maxEntries)
	return n*(16+2+16+4+2) + slots*4
}

func newRealAddrs(maxEntries int, seed uint64) realAddrs {
	n, size := realAddrsSize(maxEntries)
	return realAddrs{
		addr:  make([][16]byte, n),
		port:  make([]uint16, n),
		local: make([][16]byte, n),
		refs:  make([]uint32, n),
		index: make([]uint32, size),
		free:  make([]uint16, 0, n),
		mask:  uint32(size - 1),
		seed:  seed,
	}
}

func (p *realAddrs) home(a *[16]byte, port uint16, local *[16]byte) uint32 {
	h := mix(binary.LittleEndian.Uint64(a[:8])^p.seed, binary.LittleEndian.Uint64(a[8:])^0x9e3779b97f4a7c15)
	if port != 0 || *local != ([16]byte{}) {
		h ^= mix(binary.LittleEndian.Uint64(local[:8])^p.seed^uint64(port), binary.LittleEndian.Uint64(local[8:])^0x9e3779b97f4a7c15)
	}
	return uint32(h) & p.mask
}

// acquire returns the handle of real server address a (with, for a FullNAT entry, the real server's
// port and the local address; else 0 and zero), taking a reference; ok is false when len(addr)
// distinct keys are already held.
func (p *realAddrs) acquire(a *[16]byte, port uint16, local *[16]byte) (h uint16, ok bool) {
	i := p.home(a, port, local)
	for {
		s := p.index[i]
		if s == 0 {
			break
		}
		if p.addr[s-1] == *a && p.port[s-1] == port && p.local[s-1] == *local {
			p.refs[s-1]++
			return uint16(s - 1), true
		}
		i = (i + 1) & p.mask
	}
	switch {
	case len(p.free) > 0:
		h = p.free[len(p.free)-1]
		p.free = p.free[:len(p.free)-1]
	case p.used < len(p.addr):
		h = uint16(p.used)
		p.used++
	default:
		return 0, false
	}
	p.addr[h], p.port[h], p.local[h], p.refs[h] = *a, port, *local, 1
	p.index[i] = uint32(h) + 1
	return h, true
}

// release drops a reference to handle h; the last one frees it.
func (p *realAddrs) release(h uint16) {
	if p.refs[h]--; p.refs[h] > 0 {
		return
	}
	// Remove h from the index, shifting the rest of its probe chain back (as Table.removeIndex).
	i := p.home(&p.addr[h], p.port[h], &p.local[h])
	for p.index[i] != uint32(h)+1 {
		i = (i + 1) & p.mask
	}
	for j := (i + 1) & p.mask; p.index[j] != 0; j = (j + 1) & p.mask {
		o := p.index[j] - 1
		home := p.home(&p.addr[o], p.port[o], &p.local[o])
		// Move the slot at j into the hole at i unless its home lies cyclically in (i, j].
		if (j-home)&p.mask >= (j-i)&p.mask {
			p.index[i] = p.index[j]
			i = j
		}
	}
	p.index[i] = 0
	p.free = append(p.free, h)
}
