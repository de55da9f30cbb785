package conntrack

import (
	"math/rand/v2"
	"testing"
)

// TestProbeLength guards the hash and the index sizing: at the designed load (two tuples per entry,
// ~62%), linear probing should average about 1.8 slots per successful lookup (Knuth).
func TestProbeLength(t *testing.T) {
	const n = 1 << 16
	tab := mustNew(t, Config{MaxEntries: n})
	for i := range uint32(n) {
		insertNAT(t, tab, i)
	}
	total, worst := 0, 0
	for i := range uint32(n) {
		for _, reply := range []bool{false, true} {
			k := nkey(i, reply)
			h := tab.hashKey(&k)
			home := tab.home(h)
			r, ok := tab.find(&k, h)
			if !ok {
				t.Fatalf("key %d lost", i)
			}
			at := home
			for tab.index[at]&tab.refMask != r+1 {
				if at++; at == tab.nslots {
					at = 0
				}
			}
			d := int(at) - int(home)
			if d < 0 {
				d += int(tab.nslots)
			}
			if got := tab.distOf(tab.index[at]); got != uint32(min(d, distSat)) {
				t.Fatalf("key %d: slot says distance %d, is %d", i, got, d)
			}
			total += d + 1
			worst = max(worst, d+1)
		}
	}
	avg := float64(total) / float64(2*n)
	t.Logf("average probe length %.2f, worst %d, load %.2f", avg, worst, float64(2*n)/float64(tab.nslots))
	if avg > 2.5 {
		t.Errorf("average probe length %.2f, want <= 2.5: the hash clusters", avg)
	}
}

// TestChurn inserts and deletes at random in a full-sized table, where probe chains are long enough
// that some slots' distances saturate, and checks every tuple and every slot's distance after.
func TestChurn(t *testing.T) {
	const n = 20000
	tab := mustNew(t, Config{MaxEntries: n})
	rng := rand.New(rand.NewPCG(5, 6))
	live := map[uint32]uint32{} // client -> id
	for range 200_000 {
		c := rng.Uint32N(2 * n)
		if id, ok := live[c]; ok {
			tab.Delete(id)
			delete(live, c)
			continue
		}
		if len(live) < n {
			live[c] = insertNAT(t, tab, c)
		}
	}
	for c, id := range live {
		for _, reply := range []bool{false, true} {
			k := nkey(c, reply)
			if got, dir, ok := tab.Lookup(&k); !ok || got != id || (dir == DirReply) != reply {
				t.Fatalf("client %d reply=%v: Lookup = %d, %v, %v; want %d", c, reply, got, dir, ok, id)
			}
		}
	}
	saturated := 0
	for i, s := range tab.index {
		if s == 0 {
			continue
		}
		r := s&tab.refMask - 1
		home := tab.home(tab.hashEntry(&tab.conns[r>>1], Dir(r&1)))
		d := uint32(i) - home
		if uint32(i) < home {
			d += tab.nslots
		}
		if tab.distOf(s) != min(d, distSat) {
			t.Fatalf("slot %d: distance %d, is %d", i, tab.distOf(s), d)
		}
		if d >= distSat {
			saturated++
		}
	}
	t.Logf("%d live, %d slots at distance >= %d", len(live), saturated, distSat)
	if saturated == 0 {
		t.Error("no saturated distance: the test does not cover that path")
	}
}
