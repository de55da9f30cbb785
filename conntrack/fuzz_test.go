package conntrack

import (
	"testing"
)

// fkey maps a byte to one of 64 keys, so that random programs collide often.
func fkey(b byte) Key {
	var k Key
	k.Src[10], k.Src[11], k.Src[15] = 0xff, 0xff, b&7
	k.Dst[10], k.Dst[11], k.Dst[15] = 0xff, 0xff, 100
	k.SrcPort, k.DstPort, k.Proto = uint16(b>>3&7), 80, 6
	return k
}

type modelConn struct {
	orig, reply Key
	hasReply    bool
	deadline    int64 // LastSeen + Timeout
}

// FuzzTable runs a random program of Insert/Lookup/Delete/Expire against a map-based model. Each
// operation is 3 bytes: opcode, a, b.
func FuzzTable(f *testing.F) {
	f.Add([]byte{0, 1, 2, 1, 1, 0, 1, 2, 0})                     // insert, lookup both tuples
	f.Add([]byte{0, 1, 2, 0, 3, 4, 2, 0, 0, 1, 3, 0})            // insert two, delete first, lookup second
	f.Add([]byte{0, 1, 2, 0, 3, 4, 0, 5, 6, 0, 7, 8, 3, 200, 9}) // fill past capacity, expire
	f.Add([]byte{4, 1, 0, 4, 9, 0, 1, 1, 0, 1, 9, 0, 3, 255, 1}) // DR inserts (no reply), expire
	f.Fuzz(func(t *testing.T, prog []byte) {
		const capacity = 5
		tab := New(capacity)
		model := map[uint32]*modelConn{}
		var now int64
		byKey := func(k Key) (uint32, Dir, bool) {
			for id, c := range model {
				if c.orig == k {
					return id, DirOriginal, true
				}
				if c.hasReply && c.reply == k {
					return id, DirReply, true
				}
			}
			return 0, 0, false
		}
		for len(prog) >= 3 {
			op, a, b := prog[0], prog[1], prog[2]
			prog = prog[3:]
			switch op % 5 {
			case 0, 4: // insert (4: without reply tuple)
				o, r := fkey(a), fkey(b)
				rp := &r
				if op%5 == 4 {
					rp = nil
				}
				_, _, oIn := byKey(o)
				_, _, rIn := byKey(r)
				want := len(model) < capacity && !oIn && (rp == nil || (!rIn && r != o))
				c := Conn{LastSeen: now, Timeout: int64(a % 16), RS: uint16(b)}
				id, ok := tab.Insert(&o, rp, &c)
				if ok != want {
					t.Fatalf("Insert(%d, %d) ok=%v, model says %v", a, b, ok, want)
				}
				if ok {
					if _, dup := model[id]; dup {
						t.Fatalf("Insert returned live id %d", id)
					}
					model[id] = &modelConn{orig: o, reply: r, hasReply: rp != nil, deadline: now + int64(a%16)}
				}
			case 1: // lookup
				k := fkey(a)
				id, dir, ok := tab.Lookup(&k)
				wid, wdir, wok := byKey(k)
				if ok != wok || (ok && (id != wid || dir != wdir)) {
					t.Fatalf("Lookup(%d) = (%d, %v, %v), model (%d, %v, %v)", a, id, dir, ok, wid, wdir, wok)
				}
				if ok && tab.Get(id) == nil {
					t.Fatalf("Lookup(%d) hit id %d but Get returns nil", a, id)
				}
			case 2: // delete by id (possibly not live)
				id := uint32(a % (capacity + 2))
				tab.Delete(id)
				delete(model, id)
			case 3: // advance time and expire
				now += int64(a % 8)
				budget := int(b%4) + 1
				n := tab.Expire(now, budget, func(id uint32, c *Conn) {
					m, ok := model[id]
					if !ok {
						t.Fatalf("expired unknown id %d", id)
					}
					if m.deadline >= now {
						t.Fatalf("expired id %d with deadline %d at now %d", id, m.deadline, now)
					}
					delete(model, id)
				})
				if n > budget {
					t.Fatalf("Expire removed %d > budget %d", n, budget)
				}
			}
			if tab.Len() != len(model) {
				t.Fatalf("Len = %d, model %d", tab.Len(), len(model))
			}
		}
		// A full sweep leaves exactly the connections not due.
		tab.Expire(now, capacity+1, func(id uint32, c *Conn) { delete(model, id) })
		for id, m := range model {
			if m.deadline < now {
				t.Fatalf("id %d due at %d survived a full sweep at %d", id, m.deadline, now)
			}
			if got, _, ok := tab.Lookup(&m.orig); !ok || got != id {
				t.Fatalf("id %d: lost its original tuple", id)
			}
		}
	})
}
