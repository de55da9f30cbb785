package conntrack

import (
	"testing"

	"github.com/govs/govs/flow"
)

type modelEntry struct {
	orig, reply flow.Tuple
	hasReply    bool
	template    bool
	state       State
	rs          uint16
	lastSeen    uint32
	timeout     uint32
	tmpl        uint32 // template id+1
	refs        int
	dead        bool
}

// fuzzTimeouts are a few ticks each, so that short programs see expiry.
func fuzzTimeouts() Timeouts {
	tk := func(n int64) int64 { return n << TickShift }
	return Timeouts{
		TCP: tk(9), TCPFin: tk(3), TCPSynRecv: tk(2), TCPClose: tk(1), UDP: tk(5), TCPSynSent: tk(2),
		TCPTimeWait: tk(2), TCPCloseWait: tk(3), TCPLastAck: tk(1), TCPListen: tk(2), TCPSynAck: tk(2),
	}
}

var fuzzFlags = [...]uint8{
	TCPFlagSYN, TCPFlagSYN | TCPFlagACK, TCPFlagACK, TCPFlagFIN | TCPFlagACK, TCPFlagRST, 0,
	TCPFlagRST | TCPFlagACK, TCPFlagFIN,
}

// fuzzKeys builds a connection's tuples from a small universe so that random programs clash often.
func fuzzKeys(a, b byte) (orig flow.Tuple, real [16]byte) {
	orig.Src[10], orig.Src[11], orig.Src[15] = 0xff, 0xff, a&3
	orig.Dst[10], orig.Dst[11], orig.Dst[15] = 0xff, 0xff, 100+b&1
	orig.SrcPort, orig.DstPort, orig.Proto = uint16(a>>2&3), 80, 6
	if a&0x40 != 0 {
		orig.Proto = 17
	}
	real[10], real[11], real[15] = 0xff, 0xff, 200+b>>1&1
	return orig, real
}

// FuzzTable runs a random program of inserts (NAT, DR, templates), lookups, touches, deletes and
// expiry against a map-based model, under both full policies. Byte 0 picks the policy; then each
// operation is 3 bytes: opcode, a, b.
func FuzzTable(f *testing.F) {
	f.Add([]byte{0, 0, 1, 2, 2, 1, 0, 2, 0x11, 0})                                     // insert, lookup both tuples
	f.Add([]byte{0, 0, 1, 2, 0, 3, 4, 3, 0, 0, 2, 3, 0})                               // insert two, delete first, lookup
	f.Add([]byte{1, 0, 1, 2, 0, 3, 4, 0, 5, 6, 0, 7, 8, 0, 9, 10, 0, 11, 12, 4, 7, 3}) // evict when full
	f.Add([]byte{0, 6, 1, 0, 0, 1, 0x80, 4, 7, 3, 4, 7, 3, 3, 0, 0})                   // template, attached conn, expiry
	f.Add([]byte{1, 0, 1, 0, 5, 0, 0, 5, 0, 4, 5, 0, 2, 1, 2, 2})                      // handshake to ESTABLISHED
	f.Fuzz(func(t *testing.T, prog []byte) {
		if len(prog) == 0 {
			return
		}
		const capacity = 5
		policy := FullPolicy(prog[0] & 1)
		prog = prog[1:]
		tab, err := New(Config{MaxEntries: capacity, FullPolicy: policy, Timeouts: fuzzTimeouts()})
		if err != nil {
			t.Fatal(err)
		}
		model := map[uint32]*modelEntry{}
		var now uint32 = 1 << 31 // start near the wrap of the 32-bit tick
		tabNow := now
		nowNS := func() int64 { return int64(now) << TickShift }
		see := func() {
			if int32(now-tabNow) > 0 {
				tabNow = now
			}
		}
		byKey := func(k flow.Tuple) (uint32, Dir, bool) {
			for id, m := range model {
				if m.dead {
					continue
				}
				if m.orig == k {
					return id, DirOriginal, true
				}
				if m.hasReply && m.reply == k {
					return id, DirReply, true
				}
			}
			return 0, 0, false
		}
		live := func() int { return len(model) }
		candidate := func(id uint32, protect uint32) bool {
			m := model[id]
			return !m.dead && id != protect && !(m.template && m.refs > 0)
		}
		expired := func(m *modelEntry) bool { return int32(tabNow-m.lastSeen-m.timeout) > 0 }
		// drop removes id from the model as the table does, including template bookkeeping.
		drop := func(id uint32) {
			m := model[id]
			if m.template && m.refs > 0 {
				m.dead = true
				return
			}
			delete(model, id)
			if m.tmpl != 0 {
				tm := model[m.tmpl-1]
				tm.refs--
				if tm.refs == 0 {
					if tm.dead {
						delete(model, m.tmpl-1)
					} else {
						tm.lastSeen = tabNow
					}
				}
			}
		}
		var protect uint32

		onEvict := func(id uint32, c *Conn) {
			if policy != EvictOldestIdle {
				t.Fatalf("evicted id %d under DropNew", id)
			}
			m, ok := model[id]
			if !ok || !candidate(id, protect) {
				t.Fatalf("evicted id %d, which is not evictable (%+v)", id, m)
			}
			if !expired(m) {
				if m.state == StateEstablished {
					t.Fatalf("evicted ESTABLISHED id %d before its timeout", id)
				}
				for oid, om := range model {
					if candidate(oid, protect) && expired(om) {
						t.Fatalf("evicted idle id %d while id %d is past its timeout", id, oid)
					}
					if candidate(oid, protect) && om.state != StateEstablished &&
						int32(tabNow-om.lastSeen) > int32(tabNow-m.lastSeen) {
						t.Fatalf("evicted id %d (idle %d) while id %d is idle longer", id, tabNow-m.lastSeen, oid)
					}
				}
			}
			drop(id)

		}
		// wantFull says whether an insert must fail for lack of room.
		wantFull := func() bool {
			if live() < capacity {
				return false
			}
			if policy == DropNew {
				return true
			}
			for id := range model {
				m := model[id]
				if candidate(id, protect) && (expired(m) || m.state != StateEstablished) {
					return false
				}
			}
			return true
		}
		templates := func() []uint32 {
			var ids []uint32
			for id := uint32(0); id < capacity; id++ {
				if m, ok := model[id]; ok && m.template && !m.dead {
					ids = append(ids, id)
				}
			}
			return ids
		}
		var hints [3]uint32             // Prefetch's, kept across operations
		misses := map[flow.Tuple]Miss{} // LookupMiss's, kept across operations: InsertMissed must cope
		for len(prog) >= 3 {
			op, a, b := prog[0], prog[1], prog[2]
			prog = prog[3:]
			switch op % 7 {
			case 0, 1: // insert NAT (0) or DR (1)
				orig, real := fuzzKeys(a, b)
				nc := NewConn{Real: real, RealPort: 8080, Reply: op%7 == 0, RS: uint16(b >> 1 & 1), State: StateSynRecv}
				if orig.Proto == 17 {
					nc.State = StateUDP
				}
				protect = ^uint32(0)
				if b&0x80 != 0 {
					if ts := templates(); len(ts) > 0 {
						nc.Template = ts[int(b>>2)%len(ts)] + 1
						protect = nc.Template - 1
					}
				}
				reply := flow.Tuple{Src: real, Dst: orig.Src, SrcPort: 8080, DstPort: orig.SrcPort, Proto: orig.Proto}
				_, _, oIn := byKey(orig)
				_, _, rIn := byKey(reply)
				clash := oIn || (nc.Reply && (rIn || reply == orig))
				now += uint32(a >> 7)
				see()
				full := !clash && wantFull()

				var id uint32
				if m, ok := misses[orig]; ok && a&0x20 != 0 {
					id, err = tab.InsertMissed(&orig, &m, &nc, nowNS(), onEvict)
				} else {
					id, err = tab.Insert(&orig, &nc, nowNS(), onEvict)
				}
				switch {
				case clash:
					if err != ErrExists {
						t.Fatalf("Insert clashing tuple: err %v, want ErrExists", err)
					}
				case full:
					if err != ErrFull {
						t.Fatalf("Insert into full table: err %v, want ErrFull", err)
					}
				case err != nil:
					t.Fatalf("Insert: %v (live %d)", err, live())
				}
				if err == nil {
					if _, dup := model[id]; dup {
						t.Fatalf("Insert returned live id %d", id)
					}
					model[id] = &modelEntry{orig: orig, reply: reply, hasReply: nc.Reply, state: nc.State,
						rs: nc.RS, lastSeen: tabNow, timeout: tab.ticks[nc.State], tmpl: nc.Template}
					if nc.Template != 0 {
						model[nc.Template-1].refs++
					}
				}
			case 2: // lookup
				orig, real := fuzzKeys(a, b)
				k := orig
				if a&0x80 != 0 {
					k = flow.Tuple{Src: real, Dst: orig.Src, SrcPort: 8080, DstPort: orig.SrcPort, Proto: orig.Proto}
				}
				id, dir, ok := tab.Lookup(&k)
				switch b & 3 {
				case 1: // the data plane's way: hash, prefetch a batch, look up by hash and hint
					h := tab.Hash(&k)
					hs := []uint64{h, tab.Hash(&orig), uint64(a) * 0x9e3779b97f4a7c15}
					tab.Prefetch(hs, hints[:])
					id, dir, ok = tab.LookupHinted(&k, h, hints[0])
				case 2: // a hint left from an earlier lookup, stale after whatever ran since
					id, dir, ok = tab.LookupHinted(&k, tab.Hash(&k), hints[a%3])
				case 3:
					id, dir, ok = tab.LookupHinted(&k, tab.Hash(&k), 0)
				}
				wid, wdir, wok := byKey(k)
				if ok != wok || (ok && (id != wid || dir != wdir)) {
					t.Fatalf("Lookup = (%d, %v, %v), model (%d, %v, %v)", id, dir, ok, wid, wdir, wok)
				}
				var m Miss
				id, dir, ok = tab.LookupMiss(&k, tab.Hash(&k), hints[a%3], &m)
				if ok != wok || (ok && (id != wid || dir != wdir)) {
					t.Fatalf("LookupMiss = (%d, %v, %v), model (%d, %v, %v)", id, dir, ok, wid, wdir, wok)
				}
				misses[k] = m
			case 3: // delete by id (possibly not live)
				id := uint32(a % (capacity + 2))
				tab.Delete(id)
				if m, ok := model[id]; ok && !m.dead {
					drop(id)
				}
			case 4: // advance time and expire
				now += uint32(a % 8)
				see()
				budget := int(b%4) + 1
				n := tab.Expire(nowNS(), budget, func(id uint32, c *Conn) {
					m, ok := model[id]
					if !ok || m.dead {
						t.Fatalf("expired unknown id %d", id)
					}
					if m.template && m.refs > 0 {
						t.Fatalf("expired template id %d with %d connections", id, m.refs)
					}
					if !expired(m) {
						t.Fatalf("expired id %d (last %d, timeout %d) at %d", id, m.lastSeen, m.timeout, tabNow)
					}
					drop(id)
				})
				if n > budget {
					t.Fatalf("Expire removed %d > budget %d", n, budget)
				}
				// Templates with connections restart their idle time when Expire visits them.
				for id, m := range model {
					if m.template && !m.dead {
						got := tab.Get(id).LastSeenTick()
						if int32(got-m.lastSeen) < 0 || int32(tabNow-got) < 0 {
							t.Fatalf("template %d last seen %d, model %d, now %d", id, got, m.lastSeen, tabNow)
						}
						m.lastSeen = got
					}
				}
			case 5: // a packet of a live entry
				id := uint32(a % capacity)
				m, ok := model[id]
				if !ok || m.dead {
					break
				}
				dir := Dir(b & 1)
				if !m.hasReply {
					dir = DirOriginal
				}
				fl := fuzzFlags[b>>1%uint8(len(fuzzFlags))]
				now += uint32(a >> 6)
				see()
				old, nw := tab.Touch(id, dir, fl, nowNS())
				want := m.state
				if m.orig.Proto == 6 && !m.template {
					want = NextTCPState(m.state, dir, fl, !m.hasReply)
				}
				if old != m.state || nw != want {
					t.Fatalf("Touch(%d) = %v→%v, model %v→%v", id, old, nw, m.state, want)
				}
				m.lastSeen = tabNow
				if nw != m.state {
					m.state, m.timeout = nw, tab.ticks[nw]
				}
			case 6: // insert a template
				var client [16]byte
				client[10], client[11], client[15] = 0xff, 0xff, a&3
				k := TemplateKey(client, uint16(b&1))
				protect = ^uint32(0)
				_, _, clash := byKey(k)
				full := !clash && wantFull()
				_, real := fuzzKeys(a, b)
				id, err := tab.InsertTemplate(&k, &NewConn{Real: real, RS: uint16(b >> 1 & 1)}, int64(a%8+1)<<TickShift, nowNS(), onEvict)
				switch {
				case clash:
					if err != ErrExists {
						t.Fatalf("InsertTemplate clashing: err %v", err)
					}
				case full:
					if err != ErrFull {
						t.Fatalf("InsertTemplate into full table: err %v", err)
					}
				case err != nil:
					t.Fatalf("InsertTemplate: %v", err)
				}
				if err == nil {
					model[id] = &modelEntry{orig: k, template: true, state: StateTemplate, rs: uint16(b >> 1 & 1),
						lastSeen: tabNow, timeout: uint32(a%8 + 1)}
				}
			}
			checkModel(t, tab, model)
		}
		// A full sweep far in the future leaves only templates with connections.
		now += 1 << 12
		tab.Expire(nowNS(), capacity, func(id uint32, c *Conn) {})
		for id, m := range model {
			if !m.template || m.refs == 0 {
				if tab.Get(id) != nil {
					t.Fatalf("id %d survived a full sweep", id)
				}
			}
		}
	})
}

// checkModel compares Len, every live entry and the per-real counts with the model.
func checkModel(t *testing.T, tab *Table, model map[uint32]*modelEntry) {
	t.Helper()
	if tab.Len() != len(model) {
		t.Fatalf("Len = %d, model %d", tab.Len(), len(model))
	}
	var counts [2][3]int
	for id, m := range model {
		c := tab.Get(id)
		if m.dead {
			if c != nil {
				t.Fatalf("deleted template %d still visible", id)
			}
			continue
		}
		if c == nil {
			t.Fatalf("id %d missing", id)
		}
		if c.State() != m.state || c.RS() != m.rs || c.IsTemplate() != m.template || c.HasReply() != m.hasReply {
			t.Fatalf("id %d = %v rs %d, model %+v", id, c.State(), c.RS(), m)
		}
		if m.template && c.Refs() != m.refs {
			t.Fatalf("template %d refs %d, model %d", id, c.Refs(), m.refs)
		}
		if got, dir, ok := tab.Lookup(&m.orig); !ok || got != id || dir != DirOriginal {
			t.Fatalf("id %d: original tuple lost", id)
		}
		if m.hasReply && tab.Tuple(c, DirReply) != m.reply {
			t.Fatalf("id %d: reply tuple %v, model %v", id, tab.Tuple(c, DirReply), m.reply)
		}
		switch {
		case m.template:
			counts[m.rs][2]++
		case IsActive(m.state):
			counts[m.rs][0]++
		default:
			counts[m.rs][1]++
		}
	}
	for rs := range counts {
		a, i, tp := tab.RealConns(uint16(rs))
		if [3]int{a, i, tp} != counts[rs] {
			t.Fatalf("RealConns(%d) = %d, %d, %d, model %v", rs, a, i, tp, counts[rs])
		}
	}
}
