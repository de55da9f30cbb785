package daemon

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govs/govs/config"
	"github.com/govs/govs/dataplane"
)

// TestRestartOnlyHA: a reload applies [ha] floating and garp_refresh and keeps (and names, with
// file:line) everything else the file changes in [ha].
func TestRestartOnlyHA(t *testing.T) {
	key := filepath.Join(t.TempDir(), "ha.key")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	parse := func(ha string) *config.Config {
		t.Helper()
		src := "[dataplane]\ninterfaces = [\"l0\"]\n" + ha
		c, err := config.Parse([]byte(strings.ReplaceAll(src, "KEY", key)), "g.toml", config.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	const base = "[ha]\nlisten = \"198.18.0.1:8405\"\npeers = [\"198.18.0.2:8405\"]\nkey_file = \"KEY\"\n" // lines 3-6
	running := parse(base + "priority = 200\n")
	next := parse(base + "priority = 100\nfloating = [\"198.19.0.254\"]\ngarp_refresh = \"5s\"\n")
	got := restartOnlyHA(running, next)
	want := []string{"g.toml:7: ha.priority: 100 in the file, 200 running; takes effect at the next start (restart the backup first)"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("restartOnlyHA = %q, want %q", got, want)
	}
	if next.HA.Priority != 200 || len(next.HA.Floating) != 1 || next.HA.GARPRefresh.Seconds() != 5 {
		t.Errorf("next [ha] = %+v; want priority 200 kept, floating and garp_refresh applied", next.HA)
	}

	standalone := parse("")
	next = parse(base)
	if got := restartOnlyHA(standalone, next); len(got) != 1 || !strings.Contains(got[0], "ha: added in the file") || next.HA != nil {
		t.Errorf("adding [ha]: %q, HA %+v", got, next.HA)
	}
	next = parse("")
	if got := restartOnlyHA(running, next); len(got) != 1 || !strings.Contains(got[0], "ha: removed from the file") || next.HA != running.HA {
		t.Errorf("removing [ha]: %q, HA %+v", got, next.HA)
	}
}

// TestInterfaceProblem: HA's interface tracking reports a missing interface, and one deleted and
// created again under the same name (another index than at start: govs's sockets and programs
// are bound to the old one), with the way out; an interface as it was is no problem.
func TestInterfaceProblem(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil || lo.Flags&net.FlagUp == 0 || lo.Flags&net.FlagRunning == 0 {
		t.Skipf("needs a loopback interface that is up: %v", err)
	}
	if p := interfaceProblem([]string{"lo"}, map[string]int{"lo": lo.Index}); p != "" {
		t.Errorf("lo as at start: %q, want no problem", p)
	}
	if p := interfaceProblem([]string{"lo"}, map[string]int{"lo": lo.Index + 1000}); !strings.Contains(p, "interface lo was deleted and created again") || !strings.Contains(p, "restart govs") {
		t.Errorf("lo with another index than at start: %q", p)
	}
	if p := interfaceProblem([]string{"govs-none0"}, nil); p != "interface govs-none0 is gone" {
		t.Errorf("a missing interface: %q", p)
	}
}

// TestUnservable: a node may preempt once every virtual server can take new connections: a real
// server in rotation that is resolved and up, or a resolved sorry server. Real servers the
// operator took out (weight 0, disabled) or a reload removed are not waited for; ones down or
// quiesced by their health check, or unresolved, are; a service below its quorum is not servable.
func TestUnservable(t *testing.T) {
	ap := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	up := dataplane.Real{Addr: ap("198.19.0.11:80"), Weight: 1, Resolved: true}
	for _, tt := range []struct {
		name  string
		reals []dataplane.Real
		noQ   bool
		want  string
	}{
		{"up", []dataplane.Real{up}, false, ""},
		{"no real servers", nil, false, ""},
		{"down", []dataplane.Real{{Addr: ap("198.19.0.11:80"), Weight: 1, Resolved: true, Down: true}}, false, "198.19.0.11:80 is down"},
		{"quiesced", []dataplane.Real{{Addr: ap("198.19.0.11:80"), Resolved: true, Quiesced: true}}, false, "198.19.0.11:80 is not up"},
		{"unresolved", []dataplane.Real{{Addr: ap("198.19.0.11:80"), Weight: 1}}, false, "198.19.0.11:80 has no resolved next hop"},
		{"one of two up", []dataplane.Real{up, {Addr: ap("198.19.0.12:80"), Weight: 1, Resolved: true, Down: true}}, false, ""},
		{"operator's weight 0 and disabled", []dataplane.Real{{Addr: ap("198.19.0.11:80"), Resolved: true}, {Addr: ap("198.19.0.12:80"), Weight: 1, Resolved: true, Disabled: true}}, false, ""},
		{"removed", []dataplane.Real{{Addr: ap("198.19.0.11:80"), Weight: 1, Removed: true}}, false, ""},
		{"sorry server stands in", []dataplane.Real{{Addr: ap("198.19.0.11:80"), Weight: 1, Resolved: true, Down: true}, {Addr: ap("198.19.0.99:80"), Weight: 1, Resolved: true, Sorry: true}}, false, ""},
		{"below quorum", []dataplane.Real{up}, true, "virtual server tcp/198.18.0.100:80 is below its quorum"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tb := &dataplane.Tables{}
			svc := &dataplane.Service{Name: "tcp/198.18.0.100:80", NoQuorum: tt.noQ}
			for i, r := range tt.reals {
				r.ID = uint16(i + 1)
				for len(tb.Reals) <= i+1 {
					tb.Reals = append(tb.Reals, nil)
				}
				tb.Reals[i+1] = &r
				svc.RealIDs = append(svc.RealIDs, r.ID)
			}
			tb.Services = []*dataplane.Service{nil, svc}
			got := unservable(tb)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("unservable = %q, want %q", got, tt.want)
			}
		})
	}
}
