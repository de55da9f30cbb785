//go:build linux

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
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/govs/govs/lab"
	"github.com/govs/govs/lab/labtest"
)

// lastReload is the "last_reload" of `govs stats -json`.
type lastReload struct {
	Time    time.Time `json:"time"`
	Applied bool      `json:"applied"`
	Error   string    `json:"error"`
}

// cliStatus is the part of `govs stats -json` this file checks.
type cliStatus struct {
	LastReload     *lastReload `json:"last_reload"`
	VirtualServers []struct {
		Address     string `json:"address"`
		Protocol    string `json:"protocol"`
		RealServers []struct {
			Address string `json:"address"`
			Weight  int    `json:"weight"`
		} `json:"real_servers"`
	} `json:"virtual_servers"`
}

// servers lists "proto address: real=weight ..." per virtual server, to compare listings.
func (st cliStatus) servers() string {
	var b strings.Builder
	for _, vs := range st.VirtualServers {
		fmt.Fprintf(&b, "%s %s:", vs.Protocol, vs.Address)
		for _, rs := range vs.RealServers {
			fmt.Fprintf(&b, " %s=%d", rs.Address, rs.Weight)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// govsCLI runs the govs binary with args (outside the balancer namespace: the control socket is
// a file) and returns stdout, stderr and the error.
func govsCLI(args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, govsPath, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// TestCLIBrokenConfig: while the file on disk is broken, `govs list` and `govs stats` still reach
// the running govs through -config, and after a SIGHUP the status says the reload was rejected
// (when, and why, with file:line) while the running configuration stays and forwards.
func TestCLIBrokenConfig(t *testing.T) {
	labtest.RequireRoot(t)
	topo := labtest.NewForTest(t, lab.Options{Method: "nat", Servers: 2, Prefix: "govs-e2e"})
	srvs, err := lab.StartServers(topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srvs.Close() })
	vip := netip.AddrPortFrom(topo.VIP4, lab.HTTPPort)
	reals := []netip.AddrPort{netip.AddrPortFrom(topo.ServerAddrs4[0], lab.HTTPPort), netip.AddrPortFrom(topo.ServerAddrs4[1], lab.HTTPPort)}
	cfg := govsConfig{
		Interfaces: topo.BalancerIfaces,
		Workers:    1,
		VS:         []vsConfig{{vip, "tcp", "rr", "nat", reals, []int{1, 1}, "", nil}},
	}
	g := startGovs(t, topo, cfg)
	url := "http://" + vip.String() + "/"
	hc := topo.Client.HTTPClient(false)
	if _, err := getOnce(hc, url, 5*time.Second); err != nil {
		t.Fatalf("canary request through the VIP failed: %v", err)
	}

	status := func(t *testing.T) cliStatus {
		t.Helper()
		out, stderr, err := govsCLI("stats", "-json", "-config", g.cfgPath)
		if err != nil {
			t.Fatalf("govs stats -json -config FILE: %v\n%s", err, stderr)
		}
		var st cliStatus
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("govs stats -json printed invalid JSON: %v\n%s", err, out)
		}
		return st
	}
	if st := status(t); st.LastReload != nil {
		t.Errorf("last_reload before any reload = %+v, want null", *st.LastReload)
	}

	// A reload that is applied says so.
	cfg.VS[0].Weights = []int{2, 1}
	before := time.Now()
	g.reload(cfg)
	st := status(t)
	if st.LastReload == nil || !st.LastReload.Applied || st.LastReload.Error != "" ||
		st.LastReload.Time.Before(before.Add(-time.Second)) || st.LastReload.Time.After(time.Now().Add(time.Second)) {
		t.Errorf("last_reload after an applied reload = %+v, want applied now", st.LastReload)
	}
	running := st.servers()

	for _, tc := range []struct {
		name, text, why string
	}{
		// Valid TOML, invalid configuration: the weight of the second real server is out of range.
		{"invalid", strings.Replace(g.cfg.toml(), "weight = 1\n", "weight = 70000\n", 1),
			`virtual_server[1].real_server[2].weight: 70000 is out of range`},
		// Not TOML at all after the [control] table.
		{"not TOML", g.cfg.toml() + "\n[[virtual_server]\n", "invalid TOML at column 17 in the table header [[virtual_server]: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(g.cfgPath, []byte(tc.text), 0o644); err != nil {
				t.Fatal(err)
			}
			out, stderr, err := govsCLI("list", "-config", g.cfgPath)
			if err != nil || !strings.Contains(out, "TCP  "+vip.String()) || !strings.Contains(out, reals[1].String()) {
				t.Errorf("govs list -config FILE with the file broken: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr)
			}
			out, stderr, err = govsCLI("list", "-json", "-config", g.cfgPath)
			var l cliStatus
			if err != nil || json.Unmarshal([]byte(out), &l) != nil || l.servers() != running {
				t.Errorf("govs list -json -config FILE with the file broken: %v\nstdout:\n%s\nstderr:\n%s\nwant the servers\n%s", err, out, stderr, running)
			}
			out, stderr, err = govsCLI("stats", "-config", g.cfgPath)
			if err != nil || !strings.Contains(out, "\nlast reload: ") {
				t.Errorf("govs stats -config FILE with the file broken: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr)
			}

			var prev time.Time
			if r := status(t).LastReload; r != nil {
				prev = r.Time
			}
			if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			var st cliStatus
			for deadline := time.Now().Add(10 * time.Second); ; {
				st = status(t)
				if st.LastReload != nil && st.LastReload.Time.After(prev) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no new last_reload within 10s of SIGHUP (last %+v)", st.LastReload)
				}
				time.Sleep(50 * time.Millisecond)
			}
			r := st.LastReload
			if r.Applied || !strings.Contains(r.Error, g.cfgPath+":") || !strings.Contains(r.Error, tc.why) {
				t.Errorf("last_reload after SIGHUP with the file broken = %+v, want rejected with %q at %s:line", *r, tc.why, g.cfgPath)
			}
			if got := st.servers(); got != running {
				t.Errorf("after the rejected reload the servers are\n%s\nwant the running ones\n%s", got, running)
			}
			// The text shows the rejection and, under the virtual server, the running weights.
			out, _, err = govsCLI("stats", "-config", g.cfgPath)
			if err != nil || !strings.Contains(out, "\nlast reload: rejected at ") || !strings.Contains(out, tc.why) ||
				!regexp.MustCompile(`(?m)^  -> `+regexp.QuoteMeta(reals[0].String())+` +2 +\d+ +\d+ +\d+ +true`).MatchString(out) {
				t.Errorf("govs stats text after the rejected reload: %v\n%s", err, out)
			}
			if _, err := getOnce(hc, url, 5*time.Second); err != nil {
				t.Errorf("request through the VIP after the rejected reload failed: %v", err)
			}
		})
	}
	g.alive()
	g.stop()
}

// TestDemoPrintConfigSocket: the socket `govs demo -print-config` shows is the one the demo's govs
// serves.
func TestDemoPrintConfigSocket(t *testing.T) {
	labtest.RequireRoot(t)
	out, stderr, err := govsCLI("demo", "-print-config")
	if err != nil {
		t.Fatalf("govs demo -print-config: %v\n%s", err, stderr)
	}
	m := regexp.MustCompile(`(?m)^socket = "([^"]+)"$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("govs demo -print-config shows no [control] socket:\n%s", out)
	}
	sock := m[1]

	// Enough requests that the demo's govs runs for a while; the socket is polled meanwhile.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, govsPath, "demo", "-requests", "100", "-workers", "1")
	var demoOut lab.Output
	cmd.Stdout, cmd.Stderr = &demoOut, &demoOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var lastErr string
	for reached := false; !reached; {
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("govs demo failed: %v\n%s", err, demoOut.String())
			}
			t.Fatalf("the demo's govs never answered on %s, the socket -print-config shows (last error: %s); demo output:\n%s", sock, lastErr, demoOut.String())
		default:
		}
		out, stderr, err := govsCLI("stats", "-json", "-control", sock)
		reached = err == nil && strings.Contains(out, `"ready": true`)
		lastErr = strings.TrimSpace(stderr)
		time.Sleep(20 * time.Millisecond)
	}
	if err := <-exited; err != nil {
		t.Fatalf("govs demo failed: %v\n%s", err, demoOut.String())
	}
}

// TestRunConfigErrorOneLine: `govs run` with a file that has one problem, or that cannot be read,
// says so in one line (file:line and field, or the reason) and exits 1 before it touches anything.
func TestRunConfigErrorOneLine(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "govs.toml")
	src := "[dataplane]\ninterfaces = [\"lo\"]\n[control]\nsocket = \"" + filepath.Join(dir, "govs.sock") + "\"\n" +
		"[[virtual_server]]\naddress = \"198.18.0.100:80\"\nprotocol = \"tcp\"\nmethod = \"nat\"\n" +
		"[[virtual_server.real_server]]\naddress = \"198.19.0.11:80\"\nweight = -3\n"
	if err := os.WriteFile(bad, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, want string }{
		{bad, "govs run: " + bad + ":11: virtual_server[1].real_server[1].weight: -3 is out of range"},
		{filepath.Join(dir, "missing.toml"), "govs run: failed to read config: open " + filepath.Join(dir, "missing.toml") + ": no such file or directory"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, govsPath, "run", "-config", tc.file)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		cancel()
		out := strings.TrimSuffix(stderr.String(), "\n")
		if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 {
			t.Errorf("govs run -config %s: %v, want exit status 1", tc.file, err)
		}
		if strings.Contains(out, "\n") || !strings.HasPrefix(out, tc.want) {
			t.Errorf("govs run -config %s says:\n%s\nwant the one line\n%s...", tc.file, out, tc.want)
		}
	}
}
