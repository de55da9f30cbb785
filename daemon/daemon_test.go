package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/govs/govs/compile"
	"github.com/govs/govs/config"
	"github.com/govs/govs/control"
	"github.com/govs/govs/dataplane"
	"github.com/govs/govs/neigh"
)

// TestResolverHops: the daemon's next hops are the resolver's resolved entries on the data
// plane's interfaces; on-link means the next hop is the real server itself.
func TestResolverHops(t *testing.T) {
	mac := [6]byte{2, 0, 0, 0, 0, 0x11}
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	entries := map[netip.Addr]neigh.Entry{
		a("198.19.0.11"): {Addr: a("198.19.0.11"), IfIndex: 9, NextHop: a("198.19.0.11"), MAC: mac, Resolved: true},
		a("198.19.0.12"): {Addr: a("198.19.0.12"), IfIndex: 9, NextHop: a("198.19.0.12")}, // lookup under way
		a("198.19.9.13"): {Addr: a("198.19.9.13"), IfIndex: 7, NextHop: a("198.19.0.1"), MAC: mac, Resolved: true},
		a("198.19.0.14"): {Addr: a("198.19.0.14"), IfIndex: 3, NextHop: a("198.19.0.14"), MAC: mac, Resolved: true}, // not a govs interface
	}
	h := resolverHops{
		lookup: func(x netip.Addr) (neigh.Entry, bool) { e, ok := entries[x]; return e, ok },
		portOf: map[int]int{7: 0, 9: 1},
	}
	for _, tc := range []struct {
		addr string
		want compile.Hop
		ok   bool
	}{
		{"198.19.0.11", compile.Hop{Port: 1, MAC: mac, OnLink: true}, true},
		{"198.19.0.12", compile.Hop{}, false},
		{"198.19.9.13", compile.Hop{Port: 0, MAC: mac, OnLink: false}, true},
		{"198.19.0.14", compile.Hop{}, false},
		{"198.19.0.15", compile.Hop{}, false}, // not a target
	} {
		if got, ok := h.NextHop(0, a(tc.addr)); got != tc.want || ok != tc.ok {
			t.Errorf("NextHop(%s) = %+v, %v; want %+v, %v", tc.addr, got, ok, tc.want, tc.ok)
		}
	}
	// Before the resolver and the engine exist (New's first compile), nothing is resolved.
	if got, ok := (&Daemon{}).hopsLocked().NextHop(0, a("198.19.0.11")); ok {
		t.Errorf("NextHop without a resolver = %+v, true; want none", got)
	}

	// Compiled: a direct-routing real server behind a gateway stays unresolved, a NAT one does not.
	cfg, err := config.Parse([]byte(`
[dataplane]
interfaces = ["l0", "l1"]
[[virtual_server]]
address = "198.18.0.100:80"
protocol = "tcp"
method = "dr"
real_server = [{ address = "198.19.0.11:80" }, { address = "198.19.9.13:80" }]
[[virtual_server]]
address = "198.18.0.100:81"
protocol = "tcp"
method = "nat"
real_server = [{ address = "198.19.9.13:8080" }]
`), "t.toml", config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tb, err := compile.New().Compile(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	if r := tb.Reals[0]; !r.Resolved || r.Port != 1 || r.MAC != mac {
		t.Errorf("DR real server on the link = %+v, want resolved on port 1", r)
	}
	if r := tb.Reals[1]; r.Resolved {
		t.Errorf("DR real server behind a gateway = %+v, want unresolved", r)
	}
	if r := tb.Reals[2]; !r.Resolved || r.Port != 0 {
		t.Errorf("NAT real server behind a gateway = %+v, want resolved on port 0", r)
	}
}

// TestCloseReturnsErrors: Close reports what it failed to close.
func TestCloseReturnsErrors(t *testing.T) {
	if err := (&Daemon{}).Close(); err != nil {
		t.Fatalf("Close of an empty daemon = %v", err)
	}
	srv, err := control.NewServer(filepath.Join(t.TempDir(), "govs.sock"), &statusGate{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	// Closing the control socket again fails: Close must say so.
	err = (&Daemon{ctl: srv}).Close()
	if err == nil || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Close with a control socket that fails to close = %v, want an error wrapping net.ErrClosed", err)
	}
}

// TestRestartOnlyIO: a reload that changes the packet I/O ([dataplane] io, xdp_mode,
// xdp_irq_defer) keeps the running values, each reported with its file:line as taking effect at
// the next start; the rest of the file applies.
func TestRestartOnlyIO(t *testing.T) {
	parse := func(dataplane string) *config.Config {
		t.Helper()
		src := "[dataplane]\ninterfaces = [\"l0\"]\n" + dataplane +
			"[[virtual_server]]\naddress = \"198.18.0.100:80\"\nprotocol = \"tcp\"\nscheduler = \"rr\"\nmethod = \"nat\"\n[[virtual_server.real_server]]\naddress = \"198.19.0.11:80\"\n"
		c, err := config.Parse([]byte(src), "g.toml", config.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	running := parse("")
	next := parse("io = \"afxdp\"\nxdp_mode = \"generic\"\nxdp_irq_defer = \"auto\"\n") // lines 3-5
	want := []string{
		`g.toml:3: dataplane.io: "afxdp" in the file, "afpacket" running; takes effect at the next start`,
		`g.toml:4: dataplane.xdp_mode: "generic" in the file, "driver" running; takes effect at the next start`,
		`g.toml:5: dataplane.xdp_irq_defer: "auto" in the file, "off" running; takes effect at the next start`,
	}
	if got := restartOnly(running, next); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("restartOnly:\n got %q\nwant %q", got, want)
	}
	if !reflect.DeepEqual(next.Dataplane, running.Dataplane) {
		t.Errorf("next [dataplane] = %+v after restartOnly, want the running %+v", next.Dataplane, running.Dataplane)
	}
}

// TestConnsMaxAgree: the most connections a client asks for (control.MaxConnsMax, what govs ctl
// drain asks) is what the data plane lists at most.
func TestConnsMaxAgree(t *testing.T) {
	if control.MaxConnsMax != dataplane.MaxConns {
		t.Errorf("control.MaxConnsMax %d, dataplane.MaxConns %d", control.MaxConnsMax, dataplane.MaxConns)
	}
}
