package conntrack

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"unsafe"

	"github.com/govs/govs/flow"
	"github.com/govs/govs/internal/hugepage"
)

// Benchmarks run at 1M and 10M live entries (each size is built once per benchmark function; the
// 10M table takes ~1 GiB and a few seconds to fill). They run only with -bench.

var benchSizes = []int{1_000_000, 10_000_000}

func sizeName(n int) string { return fmt.Sprintf("entries=%dM", n/1_000_000) }

// fill builds a table of capacity size+extra holding size NAT connections for clients 0..size-1.
func fill(b *testing.B, size, extra int) *Table {
	b.Helper()
	tab := mustNew(b, Config{MaxEntries: size + extra})
	nc := natConn(1)
	for i := range uint32(size) {
		k := nkey(i, false)
		if _, err := tab.Insert(&k, &nc, 0, nil); err != nil {
			b.Fatal(err)
		}
	}
	return tab
}

// BenchmarkLookup: "hot" hits cycle over 4096 tuples (the working set stays in cache, as for a
// busy set of flows), "random" hits draw uniformly from every live tuple (one cache miss or more
// per lookup: the worst case), misses are tuples of clients never inserted.
func BenchmarkLookup(b *testing.B) {
	for _, size := range benchSizes {
		tab := fill(b, size, 0)
		rng := rand.New(rand.NewPCG(1, 2))
		hot := make([]flow.Tuple, 4096)
		misses := make([]flow.Tuple, 4096)
		for i := range hot {
			hot[i] = nkey(uint32(i*7919)%uint32(size), i%2 == 1)
			misses[i] = nkey(uint32(size+i), i%2 == 1)
		}
		random := make([]flow.Tuple, 1<<20)
		for i := range random {
			random[i] = nkey(rng.Uint32N(uint32(size)), i%2 == 1)
		}
		run := func(name string, keys []flow.Tuple) {
			b.Run(name+"/"+sizeName(size), func(b *testing.B) {
				b.ReportAllocs()
				mask := len(keys) - 1
				i := 0
				for b.Loop() {
					sinkID, _, sinkOK = tab.Lookup(&keys[i&mask])
					i++
				}
			})
		}
		run("hit-hot", hot)
		run("hit-random", random)
		run("miss", misses)
		// As a worker looks up a batch of frames: hash all, Prefetch, then look each up.
		b.Run("hit-random-batched/"+sizeName(size), func(b *testing.B) {
			b.ReportAllocs()
			var hs [benchBatch]uint64
			var hints [benchBatch]uint32
			mask := len(random) - 1
			i := 0
			for b.Loop() {
				if i%benchBatch == 0 {
					for j := range hs {
						hs[j] = tab.Hash(&random[(i+j)&mask])
					}
					tab.Prefetch(hs[:], hints[:])
				}
				sinkID, _, sinkOK = tab.LookupHinted(&random[i&mask], hs[i%benchBatch], hints[i%benchBatch])
				i++
			}
		})
		tab = nil
		runtime.GC()
	}
}

// BenchmarkInsert measures Insert of NAT connections (two tuples each) for clients never seen, in
// a table holding 1M or 10M connections: "insert" alone (every insertRound inserts, the timer stops
// while they are deleted again, to stay at the fill level), "insert+delete" the pair, and
// "insert-batched" as a worker adds the new connections of a batch of frames: the batch's original
// and reply tuples prefetched first, then for each frame the lookup that misses (LookupMiss) and
// InsertMissed; Prefetch and the lookups are in the time.
func BenchmarkInsert(b *testing.B) {
	const insertRound = 4096
	for _, size := range benchSizes {
		tab := fill(b, size, insertRound)
		keys := make([]flow.Tuple, 1<<16)
		for i := range keys { // distinct clients scattered over 2^24: i*odd is a bijection mod 2^24
			keys[i] = nkey(uint32(size)+uint32(i)*2654435761%(1<<24), false)
		}
		mask := len(keys) - 1
		nc := natConn(2)
		ids := make([]uint32, 0, insertRound)
		// i runs on across the sub-benchmarks: one stops with up to insertRound-1 connections not
		// yet deleted, and the next must not insert their keys again.
		i := 0
		// keep notes an inserted connection; every insertRound of them are deleted, untimed.
		keep := func(b *testing.B, id uint32, err error) {
			if err != nil {
				b.Fatal(err)
			}
			ids = append(ids, id)
			if len(ids) == insertRound {
				b.StopTimer()
				for _, id := range ids {
					tab.Delete(id)
				}
				ids = ids[:0]
				b.StartTimer()
			}
		}
		b.Run("insert/"+sizeName(size), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				id, err := tab.Insert(&keys[i&mask], &nc, 0, nil)
				keep(b, id, err)
				i++
			}
		})
		b.Run("insert-batched/"+sizeName(size), func(b *testing.B) {
			b.ReportAllocs()
			var hs [2 * benchBatch]uint64
			var hints [2 * benchBatch]uint32
			i = (i + benchBatch - 1) / benchBatch * benchBatch
			for b.Loop() {
				if i%benchBatch == 0 {
					for x := range benchBatch {
						k := &keys[(i+x)&mask]
						r := flow.Tuple{Src: nc.Real, Dst: k.Src, SrcPort: nc.RealPort, DstPort: k.SrcPort, Proto: k.Proto}
						hs[2*x], hs[2*x+1] = tab.Hash(k), tab.Hash(&r)
					}
					tab.Prefetch(hs[:], hints[:])
				}
				k := &keys[i&mask]
				var m Miss
				if _, _, ok := tab.LookupMiss(k, hs[2*(i%benchBatch)], hints[2*(i%benchBatch)], &m); ok {
					b.Fatal("new client found")
				}
				id, err := tab.InsertMissed(k, &m, &nc, 0, nil)
				keep(b, id, err)
				i++
			}
		})
		b.StopTimer()
		for _, id := range ids {
			tab.Delete(id)
		}
		ids = ids[:0]
		b.StartTimer()
		b.Run("insert+delete/"+sizeName(size), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				id, err := tab.Insert(&keys[i&mask], &nc, 0, nil)
				if err != nil {
					b.Fatal(err)
				}
				tab.Delete(id)
				i++
			}
		})
		tab = nil
		runtime.GC()
	}
}

// benchBatch is the batch size of the batched benchmarks, the data plane's (dataplane.MaxBatch).
const benchBatch = 32

// BenchmarkExpire: "scan" is Expire over a table where nothing is due (the per-call cost of the
// incremental sweep: budget 64 looks at 512 entries; entries/op is reported); "remove" is one due
// connection expired per op, plus the Insert of an already-due replacement to keep the table full.
func BenchmarkExpire(b *testing.B) {
	for _, size := range benchSizes {
		tab := fill(b, size, 0)
		b.Run("scan/"+sizeName(size), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkInt = tab.Expire(0, 64, nil)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/512, "ns/entry")
		})
		n := uint32(size) // next new client, across -count runs
		b.Run("remove+insert/"+sizeName(size), func(b *testing.B) {
			b.ReportAllocs()
			now := int64(1) << 50 // every entry inserted at 0 is due
			nc := natConn(3)
			removed := func(id uint32, c *Conn) {}
			for b.Loop() {
				if tab.Expire(now, 1, removed) != 1 {
					b.Fatal("nothing expired")
				}
				k := nkey(n, false)
				n++
				if _, err := tab.Insert(&k, &nc, 0, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		tab = nil
		runtime.GC()
	}
}

// BenchmarkGCPause measures what a full table costs the garbage collector: heap bytes per entry,
// and the p99 and max stop-the-world pause (runtime/metrics /gc/pauses:seconds) over forced and
// allocation-driven collections, with no table (the baseline: on a loaded machine, pauses include
// waiting for the OS to run the runtime's threads) and with 10M live entries.
func BenchmarkGCPause(b *testing.B) {
	for _, size := range []int{0, 10_000_000} {
		b.Run(fmt.Sprintf("entries=%dM", size/1_000_000), func(b *testing.B) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			var tab *Table
			perEntry := 0.0
			if size > 0 {
				tab = fill(b, size, 0)
				runtime.GC()
				runtime.ReadMemStats(&after)
				perEntry = float64(after.HeapAlloc-before.HeapAlloc) / float64(size)
				b.Logf("heap %d MiB for %d entries: %.1f bytes/entry (MemoryBytes %d MiB)",
					(after.HeapAlloc-before.HeapAlloc)>>20, tab.Len(), perEntry, tab.MemoryBytes()>>20)
				if rollup, err := os.ReadFile("/proc/self/smaps_rollup"); err == nil {
					for _, line := range strings.Split(string(rollup), "\n") {
						if strings.HasPrefix(line, "AnonHugePages") {
							b.Log(line)
						}
					}
				}
			}
			sample := []metrics.Sample{{Name: "/gc/pauses:seconds"}, {Name: "/sched/pauses/stopping/gc:seconds"}}
			metrics.Read(sample)
			baseCounts := append([]uint64(nil), sample[0].Value.Float64Histogram().Counts...)
			baseStop := append([]uint64(nil), sample[1].Value.Float64Histogram().Counts...)
			var garbage [][]byte
			i := uint32(0)
			for b.Loop() {
				// Some churn, so collections also start on their own, then a forced one.
				for range 2000 {
					garbage = append(garbage, make([]byte, 4096))
					if len(garbage) > 500 {
						garbage = garbage[:0]
					}
				}
				runtime.GC()
				if tab != nil {
					k := nkey(i%uint32(size), false)
					sinkID, _, sinkOK = tab.Lookup(&k)
				}
				i++
			}
			metrics.Read(sample)
			h := sample[0].Value.Float64Histogram()
			var total uint64
			counts := make([]uint64, len(h.Counts))
			for i := range h.Counts {
				counts[i] = h.Counts[i] - baseCounts[i]
				total += counts[i]
			}
			p50 := quantile(h.Buckets, counts, total, 0.5)
			p99, maxPause := quantile(h.Buckets, counts, total, 0.99), quantile(h.Buckets, counts, total, 1)
			b.ReportMetric(perEntry, "heap-bytes/entry")
			b.ReportMetric(p50*1e6, "p50-pause-µs")
			b.ReportMetric(p99*1e6, "p99-pause-µs")
			b.ReportMetric(maxPause*1e6, "max-pause-µs")
			b.Logf("%d pauses: p50 %.1f µs, p99 %.1f µs, max %.1f µs (bucket upper bounds)", total, p50*1e6, p99*1e6, maxPause*1e6)
			hs := sample[1].Value.Float64Histogram()
			var stotal uint64
			scounts := make([]uint64, len(hs.Counts))
			for i := range hs.Counts {
				scounts[i] = hs.Counts[i] - baseStop[i]
				stotal += scounts[i]
			}
			sp99 := quantile(hs.Buckets, scounts, stotal, 0.99)
			b.ReportMetric(sp99*1e6, "p99-stopping-µs")
			b.Logf("of which stopping the world (waiting for threads to reach a safe point): p99 %.1f µs", sp99*1e6)
			runtime.KeepAlive(tab)
		})
	}
}

// quantile returns the upper bound of the histogram bucket holding quantile q.
func quantile(buckets []float64, counts []uint64, total uint64, q float64) float64 {
	if total == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= want {
			return buckets[i+1]
		}
	}
	return buckets[len(buckets)-1]
}

// BenchmarkMemoryLatency is the floor under random lookups: one dependent load at a random place in
// 256 MiB (a pointer chase), i.e. one cache and TLB miss. A random Lookup hit costs about two.
func BenchmarkMemoryLatency(b *testing.B) {
	const n = 64 << 20 // uint32s
	next := make([]uint32, n)
	hugepage.Advise(unsafe.Pointer(&next[0]), n*4)
	perm := rand.New(rand.NewPCG(3, 4)).Perm(n)
	for i := range n { // one cycle through every element in random order
		next[perm[i]] = uint32(perm[(i+1)%n])
	}
	p := uint32(0)
	for b.Loop() {
		p = next[p]
	}
	sinkID = p
}
