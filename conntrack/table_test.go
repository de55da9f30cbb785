package conntrack

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
)

func key(src string, sport uint16, dst string, dport uint16, proto uint8) Key {
	return Key{
		Src: netip.MustParseAddr(src).As16(), Dst: netip.MustParseAddr(dst).As16(),
		SrcPort: sport, DstPort: dport, Proto: proto,
	}
}

// nkey returns a distinct key per n (and per side), as the data plane would build for client n.
func nkey(n uint32, reply bool) Key {
	var k Key
	k.Src = netip.MustParseAddr("::ffff:198.18.0.0").As16()
	binary.BigEndian.PutUint32(k.Src[12:], 0xc6120000|n>>16)
	k.Dst = netip.MustParseAddr("::ffff:198.19.0.1").As16()
	k.SrcPort, k.DstPort, k.Proto = uint16(n), 80, 6
	if reply {
		k.Src, k.Dst = k.Dst, k.Src
		k.Src[15] = 2
		k.SrcPort, k.DstPort = 8080, uint16(n)
	}
	return k
}

func TestInsertLookupDelete(t *testing.T) {
	c2v := key("::ffff:198.18.0.10", 40000, "::ffff:198.19.0.1", 80, 6)
	r2c := key("::ffff:198.18.1.20", 8080, "::ffff:198.18.0.10", 40000, 6)
	v6 := key("2001:2::10", 40000, "2001:2::1", 53, 17)
	tests := []struct {
		name     string
		orig     Key
		reply    *Key
		lookup   Key
		wantDir  Dir
		wantMiss bool
	}{
		{name: "original tuple", orig: c2v, reply: &r2c, lookup: c2v, wantDir: DirOriginal},
		{name: "reply tuple", orig: c2v, reply: &r2c, lookup: r2c, wantDir: DirReply},
		{name: "ipv6", orig: v6, lookup: v6, wantDir: DirOriginal},
		{name: "DR has no reply tuple", orig: c2v, lookup: r2c, wantMiss: true},
		{name: "port differs", orig: c2v, lookup: key("::ffff:198.18.0.10", 40001, "::ffff:198.19.0.1", 80, 6), wantMiss: true},
		{name: "proto differs", orig: c2v, lookup: key("::ffff:198.18.0.10", 40000, "::ffff:198.19.0.1", 80, 17), wantMiss: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := New(4)
			id, ok := tab.Insert(&tt.orig, tt.reply, &Conn{RS: 7, State: StateSynRecv})
			if !ok {
				t.Fatal("Insert failed on an empty table")
			}
			gotID, dir, ok := tab.Lookup(&tt.lookup)
			if tt.wantMiss {
				if ok {
					t.Fatalf("Lookup hit id %d dir %v, want miss", gotID, dir)
				}
				return
			}
			if !ok || gotID != id || dir != tt.wantDir {
				t.Fatalf("Lookup = (%d, %v, %v), want (%d, %v, true)", gotID, dir, ok, id, tt.wantDir)
			}
			if c := tab.Get(id); c == nil || c.RS != 7 {
				t.Fatalf("Get(%d) = %+v, want RS 7", id, c)
			}
			tab.Delete(id)
			if _, _, ok := tab.Lookup(&tt.lookup); ok || tab.Len() != 0 || tab.Get(id) != nil {
				t.Fatalf("after Delete: lookup ok=%v Len=%d Get=%v", ok, tab.Len(), tab.Get(id))
			}
		})
	}
}

func TestInsertRefusals(t *testing.T) {
	tab := New(2)
	a, ar := nkey(1, false), nkey(1, true)
	b, br := nkey(2, false), nkey(2, true)
	if _, ok := tab.Insert(&a, &ar, &Conn{}); !ok {
		t.Fatal("first insert failed")
	}
	for _, tc := range []struct {
		name        string
		orig, reply *Key
	}{
		{"duplicate original", &a, &br},
		{"duplicate reply", &b, &ar},
		{"original equals existing reply", &ar, nil},
		{"reply equals own original", &b, &b},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := tab.Insert(tc.orig, tc.reply, &Conn{}); ok {
				t.Fatal("Insert succeeded, want refusal")
			}
			if tab.Len() != 1 {
				t.Fatalf("Len = %d after refused insert, want 1", tab.Len())
			}
		})
	}
	if _, ok := tab.Insert(&b, &br, &Conn{}); !ok {
		t.Fatal("second insert failed")
	}
	c, cr := nkey(3, false), nkey(3, true)
	if _, ok := tab.Insert(&c, &cr, &Conn{}); ok {
		t.Fatal("insert into full table succeeded")
	}
	if tab.Len() != 2 || tab.Cap() != 2 {
		t.Fatalf("Len, Cap = %d, %d, want 2, 2", tab.Len(), tab.Cap())
	}
}

func TestExpire(t *testing.T) {
	tab := New(100)
	for i := range uint32(100) {
		o, r := nkey(i, false), nkey(i, true)
		// Even ids idle out at 1000, odd ones at 5000.
		to := int64(1000)
		if i%2 == 1 {
			to = 5000
		}
		if _, ok := tab.Insert(&o, &r, &Conn{LastSeen: 0, Timeout: to, RS: uint16(i)}); !ok {
			t.Fatal("insert failed")
		}
	}
	t.Run("nothing due", func(t *testing.T) {
		if n := tab.Expire(1000, 1000, nil); n != 0 {
			t.Fatalf("Expire removed %d, want 0", n)
		}
	})
	t.Run("budget limits removals", func(t *testing.T) {
		if n := tab.Expire(1001, 10, nil); n != 10 {
			t.Fatalf("Expire removed %d, want 10", n)
		}
	})
	t.Run("rest of the due ones", func(t *testing.T) {
		seen := map[uint16]bool{}
		n := tab.Expire(1001, 1000, func(id uint32, c *Conn) {
			if c.RS%2 != 0 {
				t.Errorf("expired conn RS %d, which is not due", c.RS)
			}
			seen[c.RS] = true
		})
		if n != 40 || len(seen) != 40 || tab.Len() != 50 {
			t.Fatalf("removed %d (callbacks %d), Len %d; want 40, 40, 50", n, len(seen), tab.Len())
		}
		for i := range uint32(100) {
			k := nkey(i, true)
			if _, _, ok := tab.Lookup(&k); ok != (i%2 == 1) {
				t.Errorf("client %d: Lookup ok=%v after expiry", i, ok)
			}
		}
	})
	t.Run("incremental sweep covers the table", func(t *testing.T) {
		total := 0
		for range 100 {
			total += tab.Expire(5001, 1, nil)
		}
		if total != 50 || tab.Len() != 0 {
			t.Fatalf("removed %d over 100 small sweeps, Len %d; want 50, 0", total, tab.Len())
		}
	})
}

func TestNextTCPState(t *testing.T) {
	to := DefaultTimeouts()
	const (
		syn    = TCPFlagSYN
		synack = TCPFlagSYN | TCPFlagACK
		ack    = TCPFlagACK
		fin    = TCPFlagFIN | TCPFlagACK
		rst    = TCPFlagRST | TCPFlagACK
	)
	tests := []struct {
		name  string
		from  State
		steps []struct {
			d Dir
			f uint8
		}
		want   State
		wantTO int64
	}{
		{"handshake", StateNone, []struct {
			d Dir
			f uint8
		}{{DirOriginal, syn}, {DirReply, synack}, {DirOriginal, ack}}, StateEstablished, to.TCP},
		{"syn only", StateNone, []struct {
			d Dir
			f uint8
		}{{DirOriginal, syn}}, StateSynRecv, to.TCPSynRecv},
		{"server ack cannot establish", StateSynRecv, []struct {
			d Dir
			f uint8
		}{{DirReply, ack}}, StateSynRecv, to.TCPSynRecv},
		{"mid-stream pickup", StateNone, []struct {
			d Dir
			f uint8
		}{{DirOriginal, ack}}, StateEstablished, to.TCP},
		{"client closes", StateEstablished, []struct {
			d Dir
			f uint8
		}{{DirOriginal, fin}, {DirReply, ack}}, StateFinWait, to.TCPFin},
		{"both close", StateEstablished, []struct {
			d Dir
			f uint8
		}{{DirOriginal, fin}, {DirReply, fin}}, StateClose, to.TCPClose},
		{"reset", StateEstablished, []struct {
			d Dir
			f uint8
		}{{DirReply, rst}}, StateClose, to.TCPClose},
		{"port reuse", StateClose, []struct {
			d Dir
			f uint8
		}{{DirOriginal, syn}}, StateSynRecv, to.TCPSynRecv},
		{"no flags", StateEstablished, []struct {
			d Dir
			f uint8
		}{{DirOriginal, 0}}, StateEstablished, to.TCP},
		{"udp stays udp", StateUDP, []struct {
			d Dir
			f uint8
		}{{DirOriginal, rst}}, StateUDP, to.UDP},
		{"bad state", State(200), []struct {
			d Dir
			f uint8
		}{{DirOriginal, syn}}, State(200), to.TCPClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, d := tt.from, int64(0)
			for _, st := range tt.steps {
				s, d = NextTCPState(s, st.d, st.f, &to)
			}
			if s != tt.want || d != tt.wantTO {
				t.Errorf("got (%v, %d), want (%v, %d)", s, d, tt.want, tt.wantTO)
			}
		})
	}
}

var (
	sinkID  uint32
	sinkOK  bool
	sinkInt int
)

func TestNoAllocs(t *testing.T) {
	tab := New(1024)
	keys := make([]Key, 2048)
	for i := range keys {
		keys[i] = nkey(uint32(i/2), i%2 == 1)
	}
	i := 0
	t.Run("Insert+Delete", func(t *testing.T) {
		if n := testing.AllocsPerRun(1000, func() {
			id, _ := tab.Insert(&keys[i%2048&^1], &keys[i%2048|1], &Conn{})
			tab.Delete(id)
			i += 2
		}); n != 0 {
			t.Errorf("allocs = %v, want 0", n)
		}
	})
	for j := 0; j < 2048; j += 2 {
		tab.Insert(&keys[j], &keys[j+1], &Conn{Timeout: int64(j)})
	}
	t.Run("Lookup", func(t *testing.T) {
		if n := testing.AllocsPerRun(1000, func() {
			sinkID, _, sinkOK = tab.Lookup(&keys[i%2048])
			i++
		}); n != 0 {
			t.Errorf("allocs = %v, want 0", n)
		}
	})
	t.Run("Expire", func(t *testing.T) {
		var now int64
		if n := testing.AllocsPerRun(100, func() {
			now += 10
			sinkInt = tab.Expire(now, 4, func(uint32, *Conn) {})
		}); n != 0 {
			t.Errorf("allocs = %v, want 0", n)
		}
	})
}

func BenchmarkLookup(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		tab := New(size)
		for i := range uint32(size) {
			o, r := nkey(i, false), nkey(i, true)
			tab.Insert(&o, &r, &Conn{})
		}
		hits := make([]Key, 4096)
		misses := make([]Key, 4096)
		for i := range hits {
			hits[i] = nkey(uint32(i*7919)%uint32(size), i%2 == 1)
			misses[i] = nkey(uint32(size+i), false)
		}
		b.Run(fmt.Sprintf("hit/entries=%d", size), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				sinkID, _, sinkOK = tab.Lookup(&hits[i&4095])
				i++
			}
		})
		b.Run(fmt.Sprintf("miss/entries=%d", size), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				sinkID, _, sinkOK = tab.Lookup(&misses[i&4095])
				i++
			}
		})
	}
}

// BenchmarkInsert measures Insert plus Delete (to stay at the fill level) in a table holding 1M
// connections.
func BenchmarkInsert(b *testing.B) {
	const size = 1 << 20
	tab := New(size + 1)
	for i := range uint32(size) {
		o, r := nkey(i, false), nkey(i, true)
		tab.Insert(&o, &r, &Conn{})
	}
	keys := make([]Key, 8192)
	for i := range keys {
		keys[i] = nkey(uint32(size+i/2), i%2 == 1)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		j := i & 8191 &^ 1
		id, ok := tab.Insert(&keys[j], &keys[j+1], &Conn{})
		if !ok {
			b.Fatal("insert failed")
		}
		tab.Delete(id)
		i += 2
	}
}
