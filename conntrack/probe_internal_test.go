package conntrack

import "testing"

// TestProbeLength guards the hash: with the index at most half full, linear probing should average
// well under 2 slots per successful lookup (Knuth: 1.5 at load 0.5).
func TestProbeLength(t *testing.T) {
	const n = 1 << 16
	tab := New(n)
	for i := range uint32(n) {
		o, r := nkey(i, false), nkey(i, true)
		if _, ok := tab.Insert(&o, &r, &Conn{}); !ok {
			t.Fatal("insert failed")
		}
	}
	total, worst := 0, 0
	for i := range uint32(n) {
		for _, reply := range []bool{false, true} {
			k := nkey(i, reply)
			h := tab.hash(&k)
			home := uint32(h) & tab.mask
			at, ok := tab.find(&k, h)
			if !ok {
				t.Fatalf("key %d lost", i)
			}
			d := int((at-home)&tab.mask) + 1
			total += d
			worst = max(worst, d)
		}
	}
	avg := float64(total) / float64(2*n)
	t.Logf("average probe length %.2f, worst %d, load %.2f", avg, worst, float64(2*n)/float64(len(tab.index)))
	if avg > 2 {
		t.Errorf("average probe length %.2f, want <= 2: the hash clusters", avg)
	}
}
