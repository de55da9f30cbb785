package daemon

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govs/govs/config"
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
