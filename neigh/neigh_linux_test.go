//go:build linux

package neigh

import (
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"
)

// lab is a resolver's namespace ("lb", interface lb0) joined by a veth to a peer namespace holding
// the targets (interface peer0), plus a dummy interface other0 the resolver is not allowed to use.
//
//	lb: lb0 198.18.10.1/24 2001:2:10::1/64 ─── veth ─── peer: peer0 198.18.10.2/24 2001:2:10::2/64
//	    other0 (veth to other1) 198.18.11.1/24               198.19.10.0/24 and 2001:2:11::/64 routed via peer
type lab struct {
	lb, peer string
	peerMAC  [6]byte
}

var (
	peerV4    = netip.MustParseAddr("198.18.10.2")
	peerV6    = netip.MustParseAddr("2001:2:10::2")
	beyondV4  = netip.MustParseAddr("198.19.10.7")  // routed via peerV4
	beyondV6  = netip.MustParseAddr("2001:2:11::7") // routed via peerV6
	missingV4 = netip.MustParseAddr("198.18.10.99")
	missingV6 = netip.MustParseAddr("2001:2:10::99")
	otherV4   = netip.MustParseAddr("198.18.11.2") // on other0, not allowed
	// The lab's own addresses on lb0: the source the kernel picks towards the peer and beyond.
	selfV4 = netip.MustParseAddr("198.18.10.1")
	selfV6 = netip.MustParseAddr("2001:2:10::1")
)

func newLab(t *testing.T) *lab {
	t.Helper()
	requireRoot(t)
	l := &lab{lb: newNetns(t, "nlb"), peer: newNetns(t, "npeer"), peerMAC: [6]byte{0x02, 0, 0x5e, 0x10, 0, 0x02}}
	ipCmd(t, "-n", l.lb, "link", "add", "lb0", "type", "veth", "peer", "name", "peer0", "netns", l.peer)
	ipCmd(t, "-n", l.peer, "link", "set", "peer0", "address", macString(l.peerMAC))
	// Links up before addresses: with the IPv6 addresses added first, the kernel lost the first
	// Neighbor Solicitation sent right after link-up on this 6.18 kernel and resolution waited for
	// the retransmission (RetransTimer, 1 s).
	ipCmd(t, "-n", l.lb, "link", "set", "lb0", "up")
	ipCmd(t, "-n", l.peer, "link", "set", "peer0", "up")
	ipCmd(t, "-n", l.lb, "addr", "add", "198.18.10.1/24", "dev", "lb0")
	ipCmd(t, "-n", l.lb, "addr", "add", "2001:2:10::1/64", "dev", "lb0", "nodad")
	ipCmd(t, "-n", l.peer, "addr", "add", "198.18.10.2/24", "dev", "peer0")
	ipCmd(t, "-n", l.peer, "addr", "add", "2001:2:10::2/64", "dev", "peer0", "nodad")
	// The routes beyond the peer have a path MTU of their own, below the link's 1500.
	ipCmd(t, "-n", l.lb, "route", "add", "198.19.10.0/24", "via", "198.18.10.2", "mtu", "1400")
	ipCmd(t, "-n", l.lb, "route", "add", "2001:2:11::/64", "via", "2001:2:10::2", "mtu", "1400")
	ipCmd(t, "-n", l.lb, "link", "add", "other0", "type", "veth", "peer", "name", "other1")
	ipCmd(t, "-n", l.lb, "link", "set", "other1", "up")
	ipCmd(t, "-n", l.lb, "addr", "add", "198.18.11.1/24", "dev", "other0")
	ipCmd(t, "-n", l.lb, "link", "set", "other0", "up")
	return l
}

func (l *logRecorder) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, substr) {
			n++
		}
	}
	return n
}

func (l *lab) newResolver(t *testing.T, logs *logRecorder) *Resolver {
	t.Helper()
	var (
		r   *Resolver
		err error
	)
	inNetns(t, l.lb, func() { r, err = New([]string{"lb0"}, slog.New(logs)) })
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// waitEntry polls Lookup until ok(e) holds or the deadline passes.
func waitEntry(t *testing.T, r *Resolver, a netip.Addr, within time.Duration, ok func(Entry) bool) (Entry, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		e, known := r.Lookup(a)
		if known && ok(e) {
			return e, time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: condition not met within %v; last entry %+v (known %v)", a, within, e, known)
		}
		select {
		case <-r.Changed():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestResolverResolves(t *testing.T) {
	l := newLab(t)
	logs := &logRecorder{}
	r := l.newResolver(t, logs)
	r.SetTargets([]netip.Addr{peerV4, peerV6, beyondV4, beyondV6, missingV4, missingV6, otherV4})

	tests := []struct {
		name    string
		addr    netip.Addr
		nextHop netip.Addr
		mtu     int
	}{
		{name: "IPv4 on link", addr: peerV4, nextHop: peerV4, mtu: 1500},
		{name: "IPv6 on link", addr: peerV6, nextHop: peerV6, mtu: 1500},
		{name: "IPv4 via gateway", addr: beyondV4, nextHop: peerV4, mtu: 1400},
		{name: "IPv6 via gateway", addr: beyondV6, nextHop: peerV6, mtu: 1400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, took := waitEntry(t, r, tt.addr, time.Second, func(e Entry) bool { return e.Resolved })
			t.Logf("%s resolved in %v", tt.addr, took)
			src := selfV6
			if tt.addr.Is4() {
				src = selfV4
			}
			want := Entry{Addr: tt.addr, IfIndex: e.IfIndex, NextHop: tt.nextHop, Src: src, MTU: tt.mtu, MAC: l.peerMAC, Resolved: true}
			if e != want || e.IfIndex == 0 {
				t.Errorf("entry (-want +got):\n- %+v\n+ %+v", want, e)
			}
		})
	}

	t.Run("unreachable and elsewhere stay unresolved", func(t *testing.T) {
		time.Sleep(1500 * time.Millisecond) // more than one refresh, with the kernel probing meanwhile
		for _, a := range []netip.Addr{missingV4, missingV6, otherV4} {
			e, known := r.Lookup(a)
			if !known || e.Resolved {
				t.Errorf("Lookup(%s) = %+v, %v; want a known, unresolved entry", a, e, known)
			}
		}
		if e, _ := r.Lookup(otherV4); e.IfIndex != 0 {
			t.Errorf("Lookup(%s).IfIndex = %d, want 0 (not an allowed interface)", otherV4, e.IfIndex)
		}
		if n := logs.count("not one of the configured interfaces"); n != 1 {
			t.Errorf("logged the wrong-interface reason %d times, want once", n)
		}
		if _, known := r.Lookup(netip.MustParseAddr("198.18.10.3")); known {
			t.Errorf("Lookup of a non-target reports it known")
		}
	})
}

func TestResolverPicksUpMACChange(t *testing.T) {
	l := newLab(t)
	r := l.newResolver(t, &logRecorder{})
	r.SetTargets([]netip.Addr{peerV4, peerV6, beyondV4})
	for _, a := range []netip.Addr{peerV4, peerV6, beyondV4} {
		waitEntry(t, r, a, time.Second, func(e Entry) bool { return e.Resolved })
	}

	// A replaced real server announces itself (gratuitous ARP, unsolicited NA); with the default
	// arp_notify=0 Linux would not, and the change would surface only when the old entry goes STALE
	// and the kernel's probe (kicked by the refresh) fails over to broadcast.
	sysctl(t, l.peer, "net.ipv4.conf.peer0.arp_notify=1", "net.ipv6.conf.peer0.ndisc_notify=1")
	newMAC := [6]byte{0x02, 0, 0x5e, 0x10, 0, 0x99}
	ipCmd(t, "-n", l.peer, "link", "set", "peer0", "address", macString(newMAC))

	for _, a := range []netip.Addr{peerV4, peerV6, beyondV4} {
		t.Run(a.String(), func(t *testing.T) {
			_, took := waitEntry(t, r, a, time.Second, func(e Entry) bool { return e.Resolved && e.MAC == newMAC })
			t.Logf("new MAC seen after %v", took)
		})
	}
}

func TestResolverRecoversDeletedEntry(t *testing.T) {
	l := newLab(t)
	r := l.newResolver(t, &logRecorder{})
	r.SetTargets([]netip.Addr{peerV4, peerV6})
	for _, a := range []netip.Addr{peerV4, peerV6} {
		waitEntry(t, r, a, time.Second, func(e Entry) bool { return e.Resolved })
	}
	start := time.Now()
	// Delete the entries one by one: `ip neigh flush` gives up ("Flush not complete bailing out
	// after 10 rounds") when the resolver brings them back while it is still going.
	for _, a := range []netip.Addr{peerV4, peerV6} {
		ipCmd(t, "-n", l.lb, "neigh", "del", a.String(), "dev", "lb0")
	}
	time.Sleep(50 * time.Millisecond) // let the deletions and the re-resolution happen
	for _, a := range []netip.Addr{peerV4, peerV6} {
		waitEntry(t, r, a, time.Second, func(e Entry) bool { return e.Resolved && e.MAC == l.peerMAC })
	}
	t.Logf("resolved again %v after the deletions", time.Since(start))
	out := ipCmd(t, "-n", l.lb, "neigh", "show", "dev", "lb0")
	for _, a := range []netip.Addr{peerV4, peerV6} {
		if !strings.Contains(out, a.String()+" lladdr "+macString(l.peerMAC)) {
			t.Errorf("kernel neighbour table after the deletions lacks %s:\n%s", a, out)
		}
	}
}

func TestResolverCloseStopsGoroutines(t *testing.T) {
	l := newLab(t)
	before := runtime.NumGoroutine()
	r := l.newResolver(t, &logRecorder{})
	r.SetTargets([]netip.Addr{peerV4})
	waitEntry(t, r, peerV4, time.Second, func(e Entry) bool { return e.Resolved })
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d before New, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestResolverCloseIsQuiet: Close ends the neighbour event subscription on purpose; that is no
// failure to log (govs logged "subscription ended, falling back ..." on every clean stop).
func TestResolverCloseIsQuiet(t *testing.T) {
	l := newLab(t)
	logs := &logRecorder{}
	r := l.newResolver(t, logs)
	r.SetTargets([]netip.Addr{peerV4})
	waitEntry(t, r, peerV4, time.Second, func(e Entry) bool { return e.Resolved })
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := logs.count("subscription ended"); n != 0 {
		t.Fatalf("Close logged %d \"subscription ended\" lines: %q", n, logs.lines)
	}
}

func TestNewErrors(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name   string
		ifaces []string
		want   string
	}{
		{name: "none", ifaces: nil, want: "no interfaces given"},
		{name: "missing", ifaces: []string{"govs-nosuch0"}, want: `failed to find interface "govs-nosuch0"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.ifaces, nil)
			if err == nil {
				r.Close()
				t.Fatal("New succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}
