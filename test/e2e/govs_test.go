package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/govs/govs/lab"
)

// vsConfig is one [[virtual_server]] of the govs config.
type vsConfig struct {
	Address   netip.AddrPort
	Protocol  string // "tcp" or "udp"
	Scheduler string // "rr" or "wrr"
	Method    string // "nat" or "dr"
	Reals     []netip.AddrPort
	Weights   []int
	Extra     string   // more lines of this [[virtual_server]] table, e.g. "persistence_timeout = \"60s\"\n"
	RealExtra []string // per real server, more lines of its table (nil or one entry per real)
}

type govsConfig struct {
	Top        string // top-level keys, before [dataplane], e.g. "shutdown_drain = \"4s\"\n"
	Interfaces []string
	Workers    int
	Socket     string
	Dataplane  string // more lines of [dataplane], e.g. "rx_mode = \"latency\"\n"
	Tail       string // more tables after the virtual servers, e.g. "[timeouts]\ntcp_fin = \"1s\"\n"
	VS         []vsConfig
}

func (c govsConfig) toml() string {
	var b strings.Builder
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	ifs := make([]string, len(c.Interfaces))
	for i, s := range c.Interfaces {
		ifs[i] = q(s)
	}
	b.WriteString(c.Top)
	fmt.Fprintf(&b, "[dataplane]\ninterfaces = [%s]\nworkers = %d\n%s\n[control]\nsocket = %s\n",
		strings.Join(ifs, ", "), c.Workers, c.Dataplane, q(c.Socket))
	for _, vs := range c.VS {
		fmt.Fprintf(&b, "\n[[virtual_server]]\naddress = %s\nprotocol = %s\nscheduler = %s\nmethod = %s\n%s",
			q(vs.Address.String()), q(vs.Protocol), q(vs.Scheduler), q(vs.Method), vs.Extra)
		for i, rs := range vs.Reals {
			fmt.Fprintf(&b, "  [[virtual_server.real_server]]\n  address = %s\n  weight = %d\n", q(rs.String()), vs.Weights[i])
			if i < len(vs.RealExtra) {
				b.WriteString(vs.RealExtra[i])
			}
		}
	}
	if c.Tail != "" {
		b.WriteString("\n" + c.Tail)
	}
	return b.String()
}

// stats is the JSON printed by `govs stats -json`.
type stats struct {
	Ready      bool   `json:"ready"`
	Workers    int    `json:"workers"`
	IO         string `json:"io"`
	LastReload *struct {
		Applied        bool     `json:"applied"`
		PendingRestart []string `json:"pending_restart"`
	} `json:"last_reload"`
	XDPMode           string           `json:"xdp_mode"`
	XDPIRQDefer       string           `json:"xdp_irq_defer"`
	XDPIRQDeferOn     bool             `json:"xdp_irq_defer_on"`
	InterfaceProblems []string         `json:"interface_problems"`
	Counters          map[string]int64 `json:"counters"`
	Drops             map[string]int64 `json:"drops"`
	DropsTotal        int64            `json:"drops_total"`
	Rings             struct {
		Packets int64 `json:"packets"`
		Drops   int64 `json:"drops"`
	} `json:"rings"`
	HA             haStats `json:"ha"`
	VirtualServers []struct {
		Address   string `json:"address"`
		Protocol  string `json:"protocol"`
		Scheduler string `json:"scheduler"`
		Method    string `json:"method"`
		// Tunnel and TunnelPort: method tun's encapsulation.
		Tunnel     string `json:"tunnel"`
		TunnelPort int    `json:"tunnel_port"`
		// PersistenceTimeout (seconds) and PersistenceNetmask: 0 when not persistent.
		PersistenceTimeout int `json:"persistence_timeout"`
		PersistenceNetmask int `json:"persistence_netmask"`
		RealServers        []struct {
			Address     string `json:"address"`
			Weight      int    `json:"weight"`
			Resolved    bool   `json:"resolved"`
			Connections int64  `json:"connections"`
			Packets     int64  `json:"packets"`
			Overloaded  bool   `json:"overloaded"`
		} `json:"real_servers"`
	} `json:"virtual_servers"`
}

// haStats is the "ha" object of `govs stats -json`.
type haStats struct {
	State              string           `json:"state"`
	Forwarding         bool             `json:"forwarding"`
	Fault              string           `json:"fault"`
	AdvertisedPriority int              `json:"advertised_priority"`
	Transitions        int64            `json:"transitions"`
	HeartbeatsSent     int64            `json:"heartbeats_sent"`
	HeartbeatsReceived int64            `json:"heartbeats_received"`
	HeartbeatsDropped  map[string]int64 `json:"heartbeats_dropped"`
	Peers              []struct {
		Address string `json:"address"`
		State   string `json:"state"`
		Alive   bool   `json:"alive"`
	} `json:"peers"`
	Sync *struct {
		Converged         bool             `json:"converged"`
		SentEntries       int64            `json:"sent_entries"`
		ReceivedEntries   int64            `json:"received_entries"`
		Installed         int64            `json:"installed"`
		Refused           int64            `json:"refused"`
		Gaps              int64            `json:"gaps"`
		SnapshotsSent     int64            `json:"snapshots_sent"`
		SnapshotsReceived int64            `json:"snapshots_received"`
		Dropped           map[string]int64 `json:"dropped"`
		Snapshot          *struct {
			Sending   bool       `json:"sending"`
			Receiving bool       `json:"receiving"`
			Since     *time.Time `json:"since"`
			Entries   int64      `json:"entries"`
			Total     int64      `json:"total"`
		} `json:"snapshot"`
	} `json:"sync"`
}

// govsProc is one `govs run` inside the balancer namespace.
type govsProc struct {
	t       *testing.T
	cfg     govsConfig
	cfgPath string
	cmd     *exec.Cmd
	ns      *lab.NS    // the namespace it runs in
	out     lab.Output // stdout and stderr
	done    chan struct{}
	waitErr error // valid once done is closed
}

// startGovs writes cfg, starts govs in topo's balancer namespace and waits for "ready". The process
// is killed in cleanup if the test did not stop it, and its output is logged if the test failed.
func startGovs(t *testing.T, topo *lab.Topology, cfg govsConfig) *govsProc {
	t.Helper()
	return startGovsEnv(t, topo, cfg, nil)
}

// startGovsEnv is startGovs with extra environment variables for govs.
func startGovsEnv(t *testing.T, topo *lab.Topology, cfg govsConfig, env []string) *govsProc {
	t.Helper()
	return startGovsIn(t, topo.Balancer, cfg, env)
}

// startGovsIn is startGovsEnv in namespace ns (one of a topology's balancers).
func startGovsIn(t *testing.T, ns *lab.NS, cfg govsConfig, env []string) *govsProc {
	t.Helper()
	g := launchGovsIn(t, ns, cfg, env)
	g.waitReady()
	return g
}

// launchGovsIn starts govs like startGovsIn but returns at once, before govs is ready.
func launchGovsIn(t *testing.T, ns *lab.NS, cfg govsConfig, env []string) *govsProc {
	t.Helper()
	return launchGovsWrapped(t, ns, cfg, env, nil)
}

// launchGovsWrapped is launchGovsIn with govs run through the command wrap (its name and
// arguments before govs's own, e.g. setpriv and its options); nil runs govs itself.
func launchGovsWrapped(t *testing.T, ns *lab.NS, cfg govsConfig, env, wrap []string) *govsProc {
	t.Helper()
	dir := t.TempDir()
	cfg.Socket = filepath.Join(dir, "govs.sock")
	g := &govsProc{t: t, cfg: cfg, cfgPath: filepath.Join(dir, "govs.toml"), ns: ns, done: make(chan struct{})}
	if err := os.WriteFile(g.cfgPath, []byte(cfg.toml()), 0o644); err != nil {
		t.Fatalf("failed to write govs config: %v", err)
	}
	argv := append(slices.Clone(wrap), govsPath, "run", "-config", g.cfgPath)
	g.cmd = ns.Command(argv[0], argv[1:]...)
	if env != nil {
		g.cmd.Env = append(os.Environ(), env...)
	}
	g.cmd.Stdout, g.cmd.Stderr = &g.out, &g.out
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("failed to start govs: %v", err)
	}
	go func() {
		g.waitErr = g.cmd.Wait()
		close(g.done)
	}()
	t.Cleanup(func() {
		select {
		case <-g.done:
		default:
			// The test ended early (t.Fatal): still ask politely first, as the contract says.
			_ = g.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-g.done:
				if g.waitErr != nil {
					t.Errorf("govs did not exit cleanly on SIGTERM: %v", g.waitErr)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("govs still running 5s after SIGTERM; killing it")
				_ = g.cmd.Process.Kill()
				<-g.done
			}
		}
		if t.Failed() {
			t.Logf("govs config:\n%s\ngovs output:\n%s", cfg.toml(), g.out.String())
		}
	})
	return g
}

// waitReady waits until govs reports ready; it fails the test if govs exits first or takes over 10s.
func (g *govsProc) waitReady() {
	t := g.t
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-g.done:
			t.Fatalf("govs exited before becoming ready: %v", g.waitErr)
		default:
		}
		st, err := g.stats()
		if err == nil && st.Ready {
			return
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("govs not ready after 10s (last stats error: %v)", last)
}

// stats runs `govs stats -control SOCK -json`.
func (g *govsProc) stats() (stats, error) {
	var st stats
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, govsPath, "stats", "-control", g.cfg.Socket, "-json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return st, fmt.Errorf("govs stats: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return st, fmt.Errorf("govs stats printed invalid JSON: %w: %s", err, out)
	}
	return st, nil
}

func (g *govsProc) mustStats() stats {
	g.t.Helper()
	st, err := g.stats()
	if err != nil {
		g.t.Fatal(err)
	}
	return st
}

// reload rewrites the config and sends SIGHUP, then waits until stats reports want's weight for
// every real server of every virtual server.
func (g *govsProc) reload(cfg govsConfig) {
	g.t.Helper()
	cfg.Socket = g.cfg.Socket
	if err := os.WriteFile(g.cfgPath, []byte(cfg.toml()), 0o644); err != nil {
		g.t.Fatalf("failed to rewrite govs config: %v", err)
	}
	g.cfg = cfg
	reloads, rejects := strings.Count(g.out.String(), "reloaded "), strings.Count(g.out.String(), "reload rejected")
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		g.t.Fatalf("failed to send SIGHUP to govs: %v", err)
	}
	// The log says when the reload is in force (or that it was refused).
	for deadline := time.Now().Add(10 * time.Second); strings.Count(g.out.String(), "reloaded ") == reloads; {
		if strings.Count(g.out.String(), "reload rejected") > rejects {
			g.t.Fatalf("govs rejected the reloaded config:\n%s\n%s", cfg.toml(), g.out.String())
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("govs did not log the reload within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	want := map[string]int{}
	for _, vs := range cfg.VS {
		for i, rs := range vs.Reals {
			want[vs.Address.String()+"/"+vs.Protocol+" "+rs.String()] = vs.Weights[i]
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	var mismatch string
	for time.Now().Before(deadline) {
		st, err := g.stats()
		if err == nil {
			mismatch = ""
			for _, vs := range st.VirtualServers {
				for _, rs := range vs.RealServers {
					k := vs.Address + "/" + vs.Protocol + " " + rs.Address
					if w, ok := want[k]; ok && w != rs.Weight {
						mismatch = fmt.Sprintf("%s weight %d, want %d", k, rs.Weight, w)
					}
				}
			}
			if mismatch == "" {
				return
			}
		} else {
			mismatch = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	g.t.Fatalf("govs did not apply the reloaded config within 10s: %s", mismatch)
}

// stop sends SIGTERM and requires exit status 0 within 5s.
func (g *govsProc) stop() {
	g.t.Helper()
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		g.t.Fatalf("failed to send SIGTERM to govs: %v", err)
	}
	select {
	case <-g.done:
		if g.waitErr != nil {
			g.t.Fatalf("govs did not exit cleanly on SIGTERM: %v", g.waitErr)
		}
	case <-time.After(5 * time.Second):
		g.t.Fatalf("govs still running 5s after SIGTERM")
	}
}

// alive fails the test if govs has exited.
func (g *govsProc) alive() {
	g.t.Helper()
	select {
	case <-g.done:
		g.t.Fatalf("govs exited unexpectedly: %v", g.waitErr)
	default:
	}
}
