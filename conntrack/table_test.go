package conntrack

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/govs/govs/flow"
)

func mustNew(tb testing.TB, cfg Config) *Table {
	tb.Helper()
	tab, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return tab
}

func key(src string, sport uint16, dst string, dport uint16, proto uint8) flow.Tuple {
	return flow.Tuple{
		Src: netip.MustParseAddr(src).As16(), Dst: netip.MustParseAddr(dst).As16(),
		SrcPort: sport, DstPort: dport, Proto: proto,
	}
}

var (
	realAddr   = netip.MustParseAddr("::ffff:198.19.0.2").As16()
	clientBase = netip.MustParseAddr("::ffff:198.18.0.0").As16()
	vipAddr    = netip.MustParseAddr("::ffff:198.19.0.1").As16()
)

// nkey returns client n's original tuple (client → VIP 198.19.0.1:80) or its NAT reply tuple (real
// server 198.19.0.2:8080 → client).
func nkey(n uint32, reply bool) flow.Tuple {
	var k flow.Tuple
	k.Src = clientBase
	binary.BigEndian.PutUint32(k.Src[12:], 0xc6120000|n>>16)
	k.Dst = vipAddr
	k.SrcPort, k.DstPort, k.Proto = uint16(n), 80, 6
	if reply {
		k.Src, k.Dst = realAddr, k.Src
		k.SrcPort, k.DstPort = 8080, uint16(n)
	}
	return k
}

func natConn(rs uint16) NewConn {
	return NewConn{Real: realAddr, RealPort: 8080, Reply: true, RS: rs, State: StateSynRecv}
}

func insertNAT(tb testing.TB, tab *Table, n uint32) uint32 {
	tb.Helper()
	k := nkey(n, false)
	nc := natConn(0)
	id, err := tab.Insert(&k, &nc, 0, nil)
	if err != nil {
		tb.Fatalf("Insert(client %d): %v", n, err)
	}
	return id
}

func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"zero entries", Config{}},
		{"too many entries", Config{MaxEntries: MaxEntriesLimit + 1}},
		{"unknown policy", Config{MaxEntries: 1, FullPolicy: 7}},
		{"timeout too long", Config{MaxEntries: 1, Timeouts: Timeouts{TCP: 1 << 62}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Fatal("New succeeded")
			}
		})
	}
}

func TestInsertLookupDelete(t *testing.T) {
	c2v := key("::ffff:198.18.0.10", 40000, "::ffff:198.19.0.1", 80, 6)
	r2c := key("::ffff:198.19.0.2", 8080, "::ffff:198.18.0.10", 40000, 6)
	v6 := key("2001:2::10", 40000, "2001:2::1", 53, 17)
	tests := []struct {
		name     string
		orig     flow.Tuple
		reply    bool
		lookup   flow.Tuple
		wantDir  Dir
		wantMiss bool
	}{
		{name: "original tuple", orig: c2v, reply: true, lookup: c2v, wantDir: DirOriginal},
		{name: "reply tuple", orig: c2v, reply: true, lookup: r2c, wantDir: DirReply},
		{name: "ipv6", orig: v6, lookup: v6, wantDir: DirOriginal},
		{name: "DR has no reply tuple", orig: c2v, lookup: r2c, wantMiss: true},
		{name: "port differs", orig: c2v, lookup: key("::ffff:198.18.0.10", 40001, "::ffff:198.19.0.1", 80, 6), wantMiss: true},
		{name: "proto differs", orig: c2v, lookup: key("::ffff:198.18.0.10", 40000, "::ffff:198.19.0.1", 80, 17), wantMiss: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := mustNew(t, Config{MaxEntries: 4})
			nc := NewConn{Real: realAddr, RealPort: 8080, Reply: tt.reply, RS: 7, VS: 3, State: StateSynRecv,
				Method: 2, InPort: 1, ClientMAC: [6]byte{2, 0, 0, 0, 0, 1}}
			id, err := tab.Insert(&tt.orig, &nc, 0, nil)
			if err != nil {
				t.Fatalf("Insert on an empty table: %v", err)
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
			c := tab.Get(id)
			if c == nil || c.RS() != 7 || c.VS != 3 || c.Method != 2 || c.InPort != 1 || c.ClientMAC()[5] != 1 ||
				c.State() != StateSynRecv || tab.Tuple(c, tt.wantDir) != tt.lookup {
				t.Fatalf("Get(%d) = %+v", id, c)
			}
			tab.Delete(id)
			if _, _, ok := tab.Lookup(&tt.lookup); ok || tab.Len() != 0 || tab.Get(id) != nil {
				t.Fatalf("after Delete: lookup ok=%v Len=%d Get=%v", ok, tab.Len(), tab.Get(id))
			}
		})
	}
}

func TestInsertRefusals(t *testing.T) {
	tab := mustNew(t, Config{MaxEntries: 2})
	a := nkey(1, false)
	insertNAT(t, tab, 1)
	otherVIP := a
	otherVIP.Dst[15]++
	ar := nkey(1, true)
	for _, tc := range []struct {
		name string
		orig flow.Tuple
		nc   NewConn
	}{
		{"duplicate original", a, natConn(0)},
		{"same client to another VIP, same real: reply clashes", otherVIP, natConn(0)},
		{"original equals existing reply", ar, NewConn{}},
		{"reply equals own original", flow.Tuple{Src: realAddr, Dst: realAddr, SrcPort: 8080, DstPort: 8080, Proto: 6}, natConn(0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tab.Insert(&tc.orig, &tc.nc, 0, nil); err != ErrExists {
				t.Fatalf("Insert: %v, want ErrExists", err)
			}
			if tab.Len() != 1 {
				t.Fatalf("Len = %d after refused insert, want 1", tab.Len())
			}
		})
	}
	t.Run("unknown template", func(t *testing.T) {
		k, nc := nkey(2, false), natConn(0)
		nc.Template = 1 // id 0 is a connection
		if _, err := tab.Insert(&k, &nc, 0, nil); err != ErrNoTemplate {
			t.Fatalf("Insert: %v, want ErrNoTemplate", err)
		}
	})
	insertNAT(t, tab, 2)
	k, nc := nkey(3, false), natConn(0)
	if _, err := tab.Insert(&k, &nc, 0, nil); err != ErrFull {
		t.Fatalf("insert into full table: %v, want ErrFull", err)
	}
	if st := tab.Stats(); tab.Len() != 2 || tab.Cap() != 2 || st.DroppedFull != 1 || st.Clashes != 4 || st.Inserted != 2 {
		t.Fatalf("Len, Cap = %d, %d, stats %+v", tab.Len(), tab.Cap(), st)
	}
}

func TestFullPolicy(t *testing.T) {
	const sec = int64(1e9)
	// Four connections: ESTABLISHED since t=0, SYN_RECV at t=1s, SYN_RECV at t=2s, UDP at t=3s.
	setup := func(t *testing.T, policy FullPolicy) *Table {
		tab := mustNew(t, Config{MaxEntries: 4, FullPolicy: policy})
		for i := range uint32(4) {
			k, nc := nkey(i, false), natConn(uint16(i))
			if i == 3 {
				nc.State = StateUDP
			}
			id, err := tab.Insert(&k, &nc, int64(i)*sec, nil)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				tab.Touch(id, DirOriginal, TCPFlagACK, 0)
			}
		}
		return tab
	}
	insert := func(tab *Table, n uint32, now int64) (uint32, []uint16, error) {
		var ev []uint16
		k, nc := nkey(n, false), natConn(9)
		id, err := tab.Insert(&k, &nc, now, func(_ uint32, c *Conn) { ev = append(ev, c.RS()) })
		return id, ev, err
	}
	t.Run("drop_new", func(t *testing.T) {
		tab := setup(t, DropNew)
		if _, ev, err := insert(tab, 10, 4*sec); err != ErrFull || len(ev) != 0 {
			t.Fatalf("err %v evicted %v, want ErrFull and none", err, ev)
		}
	})
	t.Run("evict_oldest_idle", func(t *testing.T) {
		tab := setup(t, EvictOldestIdle)
		// Oldest idle first (RS 1, then 2, then the UDP flow); the ESTABLISHED one never.
		for i, want := range []uint16{1, 2, 3} {
			_, ev, err := insert(tab, uint32(10+i), 4*sec)
			if err != nil || len(ev) != 1 || ev[0] != want {
				t.Fatalf("insert %d: err %v evicted %v, want RS %d", i, err, ev, want)
			}
			if a, in, _ := tab.RealConns(want); a != 0 || in != 0 {
				t.Fatalf("evicted RS %d still counted: %d, %d", want, a, in)
			}
		}
		// Now three SYN_RECV conns of RS 9 (idle since 4s) and the ESTABLISHED one: a new one evicts RS 9.
		tab.Touch(3, DirOriginal, TCPFlagACK, 5*sec) // ids 1..3 are RS 9's; make them all ESTABLISHED
		tab.Touch(2, DirOriginal, TCPFlagACK, 5*sec)
		tab.Touch(1, DirOriginal, TCPFlagACK, 5*sec)
		if _, ev, err := insert(tab, 20, 6*sec); err != ErrFull || len(ev) != 0 {
			t.Fatalf("all ESTABLISHED: err %v evicted %v, want ErrFull", err, ev)
		}
		// Past its timeout even an ESTABLISHED connection is fair game.
		if _, ev, err := insert(tab, 20, 6*sec+DefaultTimeouts().TCP+2*sec); err != nil || len(ev) != 1 || ev[0] != 0 {
			t.Fatalf("expired ESTABLISHED: err %v evicted %v, want RS 0", err, ev)
		}
		if st := tab.Stats(); st.Evicted != 4 || st.DroppedFull != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestExpire(t *testing.T) {
	tab := mustNew(t, Config{MaxEntries: 100, Timeouts: Timeouts{TCPSynRecv: 1000 << TickShift, TCP: 5000 << TickShift}})
	for i := range uint32(100) {
		id := insertNAT(t, tab, i)
		if i%2 == 1 { // odd clients are ESTABLISHED and idle out later
			tab.Touch(id, DirOriginal, TCPFlagACK, 0)
		}
	}
	tk := func(n int64) int64 { return n << TickShift }
	t.Run("nothing due", func(t *testing.T) {
		if n := tab.Expire(tk(1000), 1000, nil); n != 0 {
			t.Fatalf("Expire removed %d, want 0", n)
		}
	})
	t.Run("budget limits removals", func(t *testing.T) {
		if n := tab.Expire(tk(1001), 10, nil); n != 10 {
			t.Fatalf("Expire removed %d, want 10", n)
		}
	})
	t.Run("rest of the due ones", func(t *testing.T) {
		n := tab.Expire(tk(1001), 1000, func(id uint32, c *Conn) {
			if c.State() != StateSynRecv {
				t.Errorf("expired a %v conn, which is not due", c.State())
			}
		})
		if n != 40 || tab.Len() != 50 {
			t.Fatalf("removed %d, Len %d; want 40, 50", n, tab.Len())
		}
		if a, in, _ := tab.RealConns(0); a != 50 || in != 0 {
			t.Fatalf("RealConns = %d active %d inactive, want 50, 0", a, in)
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
			total += tab.Expire(tk(5001), 1, nil)
		}
		if total != 50 || tab.Len() != 0 || tab.Stats().Expired != 100 {
			t.Fatalf("removed %d over 100 small sweeps, Len %d; want 50, 0", total, tab.Len())
		}
	})
}

func TestTouchCounts(t *testing.T) {
	defTO := DefaultTimeouts()
	const (
		syn    = TCPFlagSYN
		synack = TCPFlagSYN | TCPFlagACK
		ack    = TCPFlagACK
		fin    = TCPFlagFIN | TCPFlagACK
	)
	type step struct {
		d          Dir
		f          uint8
		want       State
		wantActive int
	}
	tests := []struct {
		name  string
		reply bool
		steps []step
	}{
		{"NAT handshake and close", true, []step{
			{DirOriginal, syn, StateSynRecv, 0}, {DirReply, synack, StateSynRecv, 0},
			{DirOriginal, ack, StateEstablished, 1}, {DirOriginal, fin, StateCloseWait, 0},
			{DirReply, fin, StateTimeWait, 0}, {DirOriginal, ack, StateTimeWait, 0},
		}},
		{"DR uses INPUT-ONLY", false, []step{
			{DirOriginal, ack, StateEstablished, 1}, {DirOriginal, fin, StateFinWait, 0},
			{DirOriginal, ack, StateFinWait, 0},
		}},
		{"reset", true, []step{
			{DirOriginal, ack, StateEstablished, 1}, {DirReply, TCPFlagRST, StateClose, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := mustNew(t, Config{MaxEntries: 2})
			k, nc := nkey(1, false), natConn(5)
			nc.Reply = tt.reply
			id, err := tab.Insert(&k, &nc, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, st := range tt.steps {
				_, got := tab.Touch(id, st.d, st.f, int64(i+1)<<TickShift)
				a, in, _ := tab.RealConns(5)
				if got != st.want || a != st.wantActive || a+in != 1 {
					t.Fatalf("step %d: state %v, counts %d/%d; want %v, %d active", i, got, a, in, st.want, st.wantActive)
				}
				if c := tab.Get(id); c.LastSeenTick() != uint32(i+1) || tab.Timeout(c) < defTO.Of(got) {
					t.Fatalf("step %d: last seen %d timeout %d", i, c.LastSeenTick(), tab.Timeout(c))
				}
			}
			tab.Delete(id)
			if a, in, _ := tab.RealConns(5); a != 0 || in != 0 {
				t.Fatalf("after Delete: %d, %d", a, in)
			}
		})
	}
}

func TestNextTCPState(t *testing.T) {
	tests := []struct {
		name      string
		from      State
		dir       Dir
		flags     uint8
		inputOnly bool
		want      State
	}{
		{"client syn", StateNone, DirOriginal, TCPFlagSYN, false, StateSynRecv},
		{"server synack keeps syn_recv", StateSynRecv, DirReply, TCPFlagSYN | TCPFlagACK, false, StateSynRecv},
		{"client ack establishes", StateSynRecv, DirOriginal, TCPFlagACK, false, StateEstablished},
		{"bare ack in NONE closes", StateNone, DirOriginal, TCPFlagACK, false, StateClose},
		{"server fin", StateEstablished, DirReply, TCPFlagFIN, false, StateFinWait},
		{"client fin", StateEstablished, DirOriginal, TCPFlagFIN, false, StateCloseWait},
		{"client fin, DR", StateEstablished, DirOriginal, TCPFlagFIN, true, StateFinWait},
		{"rst beats syn", StateEstablished, DirOriginal, TCPFlagRST | TCPFlagSYN, false, StateClose},
		{"syn on time_wait", StateTimeWait, DirOriginal, TCPFlagSYN, false, StateSynRecv},
		{"no flags", StateEstablished, DirOriginal, 0, false, StateEstablished},
		{"udp stays udp", StateUDP, DirOriginal, TCPFlagRST, false, StateUDP},
		{"bad state", State(200), DirOriginal, TCPFlagSYN, false, State(200)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NextTCPState(tt.from, tt.dir, tt.flags, tt.inputOnly); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTimeoutsOf(t *testing.T) {
	to := Timeouts{TCP: 42}
	if to.Of(StateEstablished) != 42 || to.Of(StateFinWait) != 120e9 || to.Of(StateTimeWait) != 120e9 ||
		to.Of(StateClose) != 10e9 || to.Of(StateSynRecv) != 60e9 || to.Of(StateUDP) != 300e9 ||
		to.Of(StateCloseWait) != 60e9 || to.Of(StateLastAck) != 30e9 || to.Of(StateTemplate) != 0 {
		t.Fatal("Timeouts.Of does not follow IPVS's defaults")
	}
}

func TestNeedsReschedule(t *testing.T) {
	tests := []struct {
		name   string
		s      State
		dir    Dir
		flags  uint8
		usable bool
		want   bool
	}{
		{"syn on time_wait", StateTimeWait, DirOriginal, TCPFlagSYN, true, true},
		{"syn on close", StateClose, DirOriginal, TCPFlagSYN, true, true},
		{"syn on established", StateEstablished, DirOriginal, TCPFlagSYN, true, false},
		{"syn, real gone", StateEstablished, DirOriginal, TCPFlagSYN, false, true},
		{"syn-ack is not new", StateClose, DirOriginal, TCPFlagSYN | TCPFlagACK, true, false},
		{"reply direction", StateClose, DirReply, TCPFlagSYN, true, false},
		{"udp", StateUDP, DirOriginal, TCPFlagSYN, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NeedsReschedule(tt.s, tt.dir, tt.flags, tt.usable); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTemplates(t *testing.T) {
	const sec = int64(1e9)
	tab := mustNew(t, Config{MaxEntries: 8})
	client := netip.MustParseAddr("::ffff:198.18.0.77").As16()
	tk := TemplateKey(MaskAddr(client, 24), 3)
	tid, err := tab.InsertTemplate(&tk, &NewConn{Real: realAddr, RealPort: 8080, RS: 4, VS: 3}, 60*sec, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tab.InsertTemplate(&tk, &NewConn{}, 60*sec, 0, nil); err != ErrExists {
		t.Fatalf("second template: %v, want ErrExists", err)
	}
	other := tk
	other.Src = MaskAddr(netip.MustParseAddr("::ffff:198.18.0.1").As16(), 24)
	if id, _, ok := tab.Lookup(&other); !ok || id != tid {
		t.Fatal("a client in the same /24 does not find the template")
	}
	k, nc := nkey(1, false), natConn(4)
	nc.Template = tid + 1
	cid, err := tab.Insert(&k, &nc, 10*sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := tab.Get(cid).Template(); !ok || got != tid || tab.Get(tid).Refs() != 1 {
		t.Fatalf("connection's template %d %v, refs %d", got, ok, tab.Get(tid).Refs())
	}
	if _, _, p := tab.RealConns(4); p != 1 {
		t.Fatalf("templates of RS 4 = %d, want 1", p)
	}
	// Long past the template's timeout, but the connection (SYN_RECV, 60 s) is still live at 65 s.
	if tab.Expire(65*sec, 100, nil); tab.Get(tid) == nil {
		t.Fatal("template with a live connection expired")
	}
	// The connection idles out at 70 s; the template lives 60 s more.
	tab.Expire(71*sec, 100, nil)
	if tab.Get(cid) != nil || tab.Get(tid) == nil || tab.Get(tid).Refs() != 0 {
		t.Fatal("want the connection gone and the template kept")
	}
	if tab.Expire(71*sec+59*sec, 100, nil); tab.Get(tid) == nil {
		t.Fatal("template expired before its persistence timeout")
	}
	if tab.Expire(71*sec+62*sec, 100, nil); tab.Get(tid) != nil || tab.Len() != 0 {
		t.Fatal("template outlived its persistence timeout")
	}
	t.Run("delete with connections", func(t *testing.T) {
		tid, _ := tab.InsertTemplate(&tk, &NewConn{RS: 4}, 60*sec, 0, nil)
		nc.Template = tid + 1
		cid, _ := tab.Insert(&k, &nc, 0, nil)
		tab.Delete(tid)
		if _, _, ok := tab.Lookup(&tk); ok || tab.Get(tid) != nil || tab.Len() != 2 {
			t.Fatalf("deleted template still visible, Len %d", tab.Len())
		}
		tab.Delete(cid)
		if tab.Len() != 0 {
			t.Fatalf("Len = %d, want 0 once the last connection ended", tab.Len())
		}
		if a, in, p := tab.RealConns(4); a+in+p != 0 {
			t.Fatalf("RealConns(4) = %d, %d, %d", a, in, p)
		}
	})
}

func TestMaskAddr(t *testing.T) {
	tests := []struct {
		in   string
		bits int
		want string
	}{
		{"198.18.3.77", 24, "198.18.3.0"},
		{"198.18.3.77", 32, "198.18.3.77"},
		{"198.18.3.77", 20, "198.18.0.0"},
		{"2001:2::1:2:3", 64, "2001:2::"},
		{"2001:2::1:2:3", 128, "2001:2::1:2:3"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a := netip.MustParseAddr(tt.in)
			if a.Is4() {
				a = netip.AddrFrom16(a.As16())
			}
			got := netip.AddrFrom16(MaskAddr(a.As16(), tt.bits)).Unmap()
			if got.String() != tt.want {
				t.Errorf("got %v, want %s", got, tt.want)
			}
		})
	}
}

func TestMemoryBudget(t *testing.T) {
	t.Logf("Conn is %d bytes; %d bytes/entry with the index", unsafe.Sizeof(Conn{}), MemoryFor(10_000_000)/10_000_000)
	if per := MemoryFor(10_000_000) / 10_000_000; per > 100 {
		t.Errorf("%d bytes per entry at 10M, want <= 100", per)
	}
	if m := MemoryFor(10_000_000); m > 1<<30 {
		t.Errorf("10M entries need %d bytes, want <= 1 GiB", m)
	}
	// One cache line per entry: a lookup of an entry not in cache is one memory access.
	if unsafe.Sizeof(Conn{}) != 64 {
		t.Errorf("Conn is %d bytes, want 64 (one cache line)", unsafe.Sizeof(Conn{}))
	}
	tab := mustNew(t, Config{MaxEntries: 100_000})
	if a := uintptr(unsafe.Pointer(&tab.conns[0])); a%64 != 0 {
		t.Errorf("entries start at %#x, not on a cache line", a)
	}
}

var (
	sinkID  uint32
	sinkOK  bool
	sinkInt int
	sinkErr error
)

func TestNoAllocs(t *testing.T) {
	tab := mustNew(t, Config{MaxEntries: 1024, FullPolicy: EvictOldestIdle})
	keys := make([]flow.Tuple, 4096)
	for i := range keys {
		keys[i] = nkey(uint32(i/2), i%2 == 1)
	}
	nc := natConn(1)
	evict := func(uint32, *Conn) {}
	i := 0
	t.Run("Insert+Delete", func(t *testing.T) {
		if n := testing.AllocsPerRun(1000, func() {
			id, _ := tab.Insert(&keys[i%4096&^1], &nc, 0, evict)
			tab.Delete(id)
			i += 2
		}); n != 0 {
			t.Errorf("allocs = %v, want 0", n)
		}
	})
	for j := 0; j < 2048; j += 2 {
		id, _ := tab.Insert(&keys[j], &nc, int64(j)<<TickShift, evict)
		tab.Touch(id, DirOriginal, TCPFlagACK, int64(j)<<TickShift)
	}
	t.Run("Lookup+Touch", func(t *testing.T) {
		if n := testing.AllocsPerRun(1000, func() {
			sinkID, _, sinkOK = tab.Lookup(&keys[i%2048])
			tab.Touch(sinkID, DirOriginal, TCPFlagACK, 0)
			i++
		}); n != 0 {
			t.Errorf("allocs = %v, want 0", n)
		}
	})
	t.Run("Insert evicting", func(t *testing.T) {
		if n := testing.AllocsPerRun(1000, func() {
			_, sinkErr = tab.Insert(&keys[2048+i%2048&^1], &nc, 1<<40, evict)
			i += 2
		}); n != 0 {
			t.Errorf("allocs = %v, want 0", n)
		}
	})
	t.Run("Expire", func(t *testing.T) {
		now := int64(1 << 40)
		if n := testing.AllocsPerRun(100, func() {
			now += 10 << TickShift
			sinkInt = tab.Expire(now, 4, evict)
		}); n != 0 {
			t.Errorf("allocs = %v, want 0", n)
		}
	})
}

// TestFullNATEntries checks FullNAT connections: the reply tuple is real server → local endpoint,
// found as DirReply; the client's reply tuple is not in the table; Real and Local read the
// endpoints back; two connections to one real server through one local address share a handle;
// Delete removes both tuples and frees the handle.
func TestFullNATEntries(t *testing.T) {
	tab := mustNew(t, Config{MaxEntries: 8})
	realAddr := key("::ffff:198.19.0.11", 0, "::", 0, 0).Src
	local := key("::ffff:198.19.0.2", 0, "::", 0, 0).Src
	var ids []uint32
	for i, lport := range []uint16{2000, 2001} {
		orig := key("::ffff:198.18.0.10", uint16(40000+i), "::ffff:198.18.0.100", 80, 6)
		nc := NewConn{Real: realAddr, RealPort: 8080, Reply: true, FullNAT: true, Local: local, LocalPort: lport, RS: 1, State: StateSynRecv}
		id, err := tab.Insert(&orig, &nc, 0, nil)
		if err != nil {
			t.Fatalf("Insert: %v", err)
		}
		ids = append(ids, id)
		reply := flow.Tuple{Src: realAddr, Dst: local, SrcPort: 8080, DstPort: lport, Proto: 6}
		if got, dir, ok := tab.Lookup(&reply); !ok || got != id || dir != DirReply {
			t.Fatalf("Lookup(reply) = %d, %v, %v; want %d, reply", got, dir, ok, id)
		}
		natReply := flow.Tuple{Src: realAddr, Dst: orig.Src, SrcPort: 8080, DstPort: orig.SrcPort, Proto: 6}
		if _, _, ok := tab.Lookup(&natReply); ok {
			t.Fatal("the client's reply tuple is in the table of a FullNAT connection")
		}
		c := tab.Get(id)
		if ra, rp := tab.Real(c); ra != realAddr || rp != 8080 {
			t.Fatalf("Real = %v, %d", ra, rp)
		}
		if la, lp, ok := tab.Local(c); !ok || la != local || lp != lport || !c.IsFullNAT() || tab.Tuple(c, DirReply) != reply {
			t.Fatalf("Local = %v, %d, %v; reply tuple %+v", la, lp, ok, tab.Tuple(c, DirReply))
		}
		// The same reply tuple for another client is a clash.
		dup := key("::ffff:198.18.0.11", 1, "::ffff:198.18.0.100", 80, 6)
		if _, err := tab.Insert(&dup, &nc, 0, nil); err != ErrExists {
			t.Fatalf("Insert with a taken local endpoint: %v, want ErrExists", err)
		}
	}
	if a, b := tab.Get(ids[0]), tab.Get(ids[1]); a.ra != b.ra || tab.reals.refs[a.ra] != 2 {
		t.Fatalf("handles %d and %d (refs %d), want one shared by both", a.ra, b.ra, tab.reals.refs[a.ra])
	}
	for _, id := range ids {
		tab.Delete(id)
	}
	reply := flow.Tuple{Src: realAddr, Dst: local, SrcPort: 8080, DstPort: 2000, Proto: 6}
	if _, _, ok := tab.Lookup(&reply); ok || tab.Len() != 0 || len(tab.reals.free) != 1 {
		t.Fatalf("after Delete: found %v, Len %d, free handles %d", ok, tab.Len(), len(tab.reals.free))
	}
}

// TestNoHandle: a table with room whose real server handles are all held refuses a FullNAT
// connection that needs one more with ErrNoHandle, counted as NoHandle, not as a full table
// (ErrFull, DroppedFull); one that shares a held handle still fits.
func TestNoHandle(t *testing.T) {
	tab := mustNew(t, Config{MaxEntries: maxRealAddrs + 16})
	nc := NewConn{Real: realAddr, RealPort: 8080, Reply: true, FullNAT: true, LocalPort: 2000, State: StateSynRecv}
	insert := func(n, local uint32) error {
		orig := nkey(n, false)
		binary.BigEndian.PutUint32(nc.Local[12:], 0xc6130000+local) // from 198.19.0.0
		nc.Local[10], nc.Local[11] = 0xff, 0xff
		_, err := tab.Insert(&orig, &nc, 0, nil)
		return err
	}
	for n := range uint32(maxRealAddrs) {
		if err := insert(n, n); err != nil { // one local address each
			t.Fatalf("connection %d: %v", n, err)
		}
	}
	if err := insert(maxRealAddrs, maxRealAddrs); err != ErrNoHandle {
		t.Fatalf("connection %d with every handle held: %v, want ErrNoHandle", maxRealAddrs, err)
	}
	nc.LocalPort = 2001 // the last local address again: its handle is held already
	if err := insert(maxRealAddrs+1, maxRealAddrs-1); err != nil {
		t.Fatalf("a connection sharing a held handle: %v", err)
	}
	if st := tab.Stats(); st.NoHandle != 1 || st.DroppedFull != 0 || tab.Len() != maxRealAddrs+1 {
		t.Fatalf("NoHandle %d, DroppedFull %d, Len %d; want 1, 0, %d", st.NoHandle, st.DroppedFull, tab.Len(), maxRealAddrs+1)
	}
}
