package conntrack

import (
	"math/rand/v2"
	"testing"
)

// TestRealAddrs runs random acquires and releases against a map model, with few index slots so
// probe chains are long and wrap, and checks handles, reference counts, reuse of freed handles
// and the refusal when every handle is held.
func TestRealAddrs(t *testing.T) {
	const capacity = 13
	p := newRealAddrs(capacity, 42)
	type held struct {
		h    uint16
		refs int
	}
	model := map[[16]byte]*held{}
	var addrs [40][16]byte
	for i := range addrs {
		addrs[i][10], addrs[i][11], addrs[i][15] = 0xff, 0xff, byte(i)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for step := range 20000 {
		a := addrs[rng.IntN(len(addrs))]
		m := model[a]
		if m == nil || rng.IntN(2) == 0 {
			h, ok := p.acquire(&a, 0, &[16]byte{})
			switch {
			case m != nil:
				if !ok || h != m.h {
					t.Fatalf("step %d: acquire of a held address = %d, %v; want %d", step, h, ok, m.h)
				}
				m.refs++
			case len(model) == capacity:
				if ok {
					t.Fatalf("step %d: acquire with every handle held gave %d", step, h)
				}
			default:
				if !ok {
					t.Fatalf("step %d: acquire refused with %d of %d held", step, len(model), capacity)
				}
				for oa, om := range model {
					if om.h == h {
						t.Fatalf("step %d: handle %d given to %v while %v holds it", step, h, a[15], oa[15])
					}
				}
				model[a] = &held{h: h, refs: 1}
			}
		} else {
			p.release(m.h)
			if m.refs--; m.refs == 0 {
				delete(model, a)
			}
		}
		for a, m := range model {
			if p.addr[m.h] != a || p.refs[m.h] != uint32(m.refs) {
				t.Fatalf("step %d: handle %d holds %v refs %d; model %v refs %d", step, m.h, p.addr[m.h][15], p.refs[m.h], a[15], m.refs)
			}
		}
		n := 0
		for _, s := range p.index {
			if s != 0 {
				n++
			}
		}
		if n != len(model) {
			t.Fatalf("step %d: %d index slots in use, model %d addresses", step, n, len(model))
		}
	}
}
