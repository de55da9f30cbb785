package bench

import (
	"math/rand/v2"
	"runtime"
	"time"
	"unsafe"

	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/internal/hugepage"
)

// MemoryFloor measures, on this machine and now, the least time per packet any data plane needs to
// find one connection among flows live ones: a packet of an established flow reads one random cache
// line of a connection-table index and the line(s) of an entry (one: an entry is 64 bytes), each a
// miss once the table outgrows the caches. The loop does only those loads per packet (the first
// and last byte of the entry), over arrays as large as a table for flows connections, in batches
// of 32 packets whose loads are all independent (so the CPU overlaps as many misses as it can, as
// the data plane's prefetching does). It returns ns per packet.
//
// The copy baseline says what moving the bytes costs; this one says what remembering a million
// connections costs on this machine's memory, a floor no per-packet code can go under.
func MemoryFloor(flows, packets int) float64 {
	capacity := max(1<<18, flows+flows/4)
	entry := int(unsafe.Sizeof(conntrack.Conn{}))
	index := make([]uint32, conntrack.MemoryFor(capacity)/4-capacity*entry/4)
	entries := make([]byte, capacity*entry)
	hugepage.Advise(unsafe.Pointer(&index[0]), uintptr(len(index))*4)
	hugepage.Advise(unsafe.Pointer(&entries[0]), uintptr(len(entries)))
	for i := 0; i < len(index); i += 1024 { // fault every page in before timing
		index[i] = 1
	}
	for i := 0; i < len(entries); i += 4096 {
		entries[i] = 1
	}
	rng := rand.New(rand.NewPCG(uint64(flows), 1))
	const batch = 32
	var slots [batch]uint32
	var ents [batch]uint32
	var acc uint32
	start := time.Now()
	for done := 0; done < packets; done += batch {
		for j := range batch {
			slots[j] = rng.Uint32N(uint32(len(index)))
			ents[j] = rng.Uint32N(uint32(flows))
		}
		for _, s := range slots {
			acc += index[s]
		}
		for _, e := range ents {
			o := int(e) * entry
			acc += uint32(entries[o]) + uint32(entries[o+entry-1])
		}
	}
	el := time.Since(start)
	runtime.KeepAlive(acc) // the loop must not be optimised away
	return float64(el.Nanoseconds()) / float64(packets)
}
