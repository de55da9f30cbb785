package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/govs/govs/config"
)

// runCLI runs one subcommand's function as `govs` would and returns what it printed and its exit
// code. The commands write to os.Stdout and os.Stderr, so those are swapped for files meanwhile;
// tests using it do not run in parallel.
func runCLI(t *testing.T, cmd func([]string) int, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	dir := t.TempDir()
	outF, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	errF, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = outF, errF
	func() {
		defer func() { os.Stdout, os.Stderr = oldOut, oldErr }()
		code = cmd(args)
	}()
	outF.Close()
	errF.Close()
	o, _ := os.ReadFile(outF.Name())
	e, _ := os.ReadFile(errF.Name())
	return string(o), string(e), code
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// vsTOML is one valid virtual server with two real servers.
const vsTOML = `
[[virtual_server]]
address = "198.18.0.100:80"
protocol = "tcp"
scheduler = "rr"
method = "nat"
  [[virtual_server.real_server]]
  address = "198.19.0.11:80"
  [[virtual_server.real_server]]
  address = "198.19.0.12:80"
  weight = 3
`

func TestCheckConfigMissingInterfacePointsToOffline(t *testing.T) {
	// No host has an interface called this (it is 15 bytes, the longest name the kernel allows).
	f := writeFile(t, "govs.toml", "[dataplane]\ninterfaces = [\"govs-absent-if0\"]\n"+vsTOML)
	_, stderr, code := runCLI(t, cmdCheckConfig, f)
	if code != 1 {
		t.Fatalf("check-config exit code %d, want 1; stderr:\n%s", code, stderr)
	}
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("check-config printed %d lines, want one:\n%s", len(lines), stderr)
	}
	for _, want := range []string{f + ":2: dataplane.interfaces[1]: ", `"govs-absent-if0" does not exist on this host`, "govs check-config -offline " + f} {
		if !strings.Contains(stderr, want) {
			t.Errorf("check-config's message lacks %q:\n%s", want, stderr)
		}
	}
	stdout, stderr, code := runCLI(t, cmdCheckConfig, "-offline", f)
	if code != 0 || !strings.Contains(stdout, "tcp/198.18.0.100:80 scheduler=rr") {
		t.Errorf("check-config -offline: exit code %d, stdout %q, stderr %q; want 0 and the summary", code, stdout, stderr)
	}
}

func TestCheckConfigPortOutOfRange(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"virtual server", strings.Replace(vsTOML, "198.18.0.100:80", "198.18.0.100:70000", 1),
			`:4: virtual_server[1].address: port 70000 in "198.18.0.100:70000" is out of range; write a port from 0 to 65535, e.g. "198.18.0.100:80"`},
		{"real server", strings.Replace(vsTOML, "198.19.0.11:80", "198.19.0.11:65536", 1),
			`:9: virtual_server[1].real_server[1].address: port 65536 in "198.19.0.11:65536" is out of range; write a port from 0 to 65535, e.g. "198.19.0.11:80"`},
		{"ipv6", strings.Replace(vsTOML, `"198.18.0.100:80"`, `"[2001:2::100]:99999"`, 1),
			`:4: virtual_server[1].address: port 99999 in "[2001:2::100]:99999" is out of range; write a port from 0 to 65535, e.g. "[2001:2::100]:80"`},
		{"not a number", strings.Replace(vsTOML, "198.18.0.100:80", "198.18.0.100:http", 1),
			`:4: virtual_server[1].address: port "http" in "198.18.0.100:http" is not a number and names are not looked up; write e.g. "198.18.0.100:80"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := writeFile(t, "govs.toml", "[dataplane]\ninterfaces = [\"l0\"]"+tc.src)
			_, stderr, code := runCLI(t, cmdCheckConfig, "-offline", f)
			if code != 1 {
				t.Fatalf("check-config exit code %d, want 1; stderr:\n%s", code, stderr)
			}
			if got, want := strings.TrimRight(stderr, "\n"), f+tc.want; got != want {
				t.Errorf("check-config said\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestCheckConfigNoVirtualServerWarns(t *testing.T) {
	f := writeFile(t, "govs.toml", "[dataplane]\ninterfaces = [\"l0\"]\n")
	stdout, stderr, code := runCLI(t, cmdCheckConfig, "-offline", f)
	if code != 0 {
		t.Fatalf("check-config exit code %d, want 0 (a warning, not an error); stderr:\n%s", code, stderr)
	}
	want := "warning: " + f + ": no [[virtual_server]]: govs runs but balances nothing; add a [[virtual_server]] with its [[virtual_server.real_server]] tables\n"
	if stderr != want {
		t.Errorf("check-config stderr %q, want %q", stderr, want)
	}
	if stdout != "" {
		t.Errorf("check-config stdout %q, want nothing (no virtual server to summarise)", stdout)
	}
	// A file with virtual servers gets no warning.
	f = writeFile(t, "govs.toml", "[dataplane]\ninterfaces = [\"l0\"]\n"+vsTOML)
	if _, stderr, code := runCLI(t, cmdCheckConfig, "-offline", f); code != 0 || stderr != "" {
		t.Errorf("check-config of a complete file: exit code %d, stderr %q; want 0 and nothing", code, stderr)
	}
}

// statusJSON is what a running govs answers on its control socket: two real servers under one
// virtual server, and a rejected reload.
const statusJSON = `{
  "ready": true, "version": "test", "config": "/etc/govs/govs.toml", "generation": 7, "workers": 2,
  "interfaces": ["l0", "l1"],
  "counters": {"rx_frames": 1234, "tx_frames": 1200},
  "drops": {"unresolved_neighbor": 3, "no_service": 0},
  "drops_total": 3,
  "rings": {"packets": 1300, "drops": 0},
  "last_reload": {"time": "2024-05-06T07:08:09Z", "applied": false,
    "error": "/etc/govs/govs.toml:12: virtual_server[1].real_server[2].weight: 70000 is out of range\n/etc/govs/govs.toml:20: bogus: unknown key"},
  "virtual_servers": [
    {"address": "198.18.0.100:80", "protocol": "tcp", "scheduler": "rr", "method": "nat",
     "real_servers": [
       {"address": "198.19.0.11:80", "weight": 1, "resolved": true, "connections": 9,
        "active_connections": 5, "inactive_connections": 4, "packets": 501, "overloaded": false},
       {"address": "198.19.0.12:80", "weight": 3, "resolved": false, "connections": 0,
        "active_connections": 0, "inactive_connections": 0, "packets": 0, "overloaded": false}
     ]}
  ]
}
`

// fakeGovs answers every request on a unix socket with answer, as a running govs's control socket
// does, and returns the socket's path.
func fakeGovs(t *testing.T, answer string) string {
	t.Helper()
	// Unix socket paths are short (108 bytes): t.TempDir's can be longer.
	dir, err := os.MkdirTemp("", "govs-cli-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "govs.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		os.RemoveAll(dir)
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
				io.WriteString(c, answer)
			}
			c.Close()
		}
	}()
	return sock
}

// TestListAndStatsWithBrokenFile: the CLI reads only the [control] socket from -config, so it
// reaches the running govs whatever else is wrong in the file on disk.
func TestListAndStatsWithBrokenFile(t *testing.T) {
	sock := fakeGovs(t, statusJSON)
	files := map[string]string{
		// Valid TOML, invalid configuration: a weight out of range, an unknown key, a missing interface.
		"invalid": "[dataplane]\ninterfaces = [\"govs-absent-if0\"]\nbogus = 1\n[control]\nsocket = \"" + sock + "\"\n" +
			strings.Replace(vsTOML, "weight = 3", "weight = 70000", 1),
		// Not even TOML: the socket is found line by line.
		"not TOML": "[dataplane]\ninterfaces = [\"l0\"\n\n[control]\nsocket = \"" + sock + "\" # the test's\n" + vsTOML + "[[virtual_server]\n",
		// The socket as a dotted key at the top level, the file broken after it.
		"dotted": "control.socket = '" + sock + "'\n[dataplane]\ninterfaces = = [\"l0\"]\n",
	}
	for name, src := range files {
		t.Run(name, func(t *testing.T) {
			f := writeFile(t, "govs.toml", src)
			stdout, stderr, code := runCLI(t, cmdList, "-config", f)
			if code != 0 {
				t.Fatalf("govs list -config FILE: exit code %d, stderr:\n%s", code, stderr)
			}
			if !hasFields(stdout, "TCP 198.18.0.100:80 rr") || !hasFields(stdout, "-> 198.19.0.11:80 Masq 1 5 4 501 true") {
				t.Errorf("govs list output lacks the virtual server or its first real server:\n%s", stdout)
			}
			if name != "invalid" {
				if want := "govs list: warning: " + f + ":"; !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 ||
					!strings.Contains(stderr, "is not valid TOML") || !strings.Contains(stderr, "the [control] socket at line "+map[string]string{"not TOML": "5", "dotted": "1"}[name]) {
					t.Errorf("govs list's stderr %q, want one line starting %q that says the file is not TOML and where the socket came from", stderr, want)
				}
			} else if stderr != "" {
				t.Errorf("govs list's stderr %q, want nothing", stderr)
			}

			stdout, stderr, code = runCLI(t, cmdList, "-json", "-config", f)
			if code != 0 {
				t.Fatalf("govs list -json -config FILE: exit code %d, stderr:\n%s", code, stderr)
			}
			checkListJSON(t, stdout)

			stdout, stderr, code = runCLI(t, cmdStats, "-config", f)
			if code != 0 || !strings.Contains(stdout, "rx_frames") {
				t.Fatalf("govs stats -config FILE: exit code %d, stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			stdout, stderr, code = runCLI(t, cmdStats, "-json", "-config", f)
			if code != 0 || !json.Valid([]byte(stdout)) {
				t.Fatalf("govs stats -json -config FILE: exit code %d, stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
		})
	}
}

// hasFields reports whether a line of out has the white-space separated fields of want.
func hasFields(out, want string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.Join(strings.Fields(l), " ") == want {
			return true
		}
	}
	return false
}

// checkListJSON checks `govs list -json` against statusJSON: the virtual and real servers, with
// the control API's field names.
func checkListJSON(t *testing.T, out string) {
	t.Helper()
	var l struct {
		Version        string `json:"version"`
		VirtualServers []struct {
			Address     string           `json:"address"`
			Protocol    string           `json:"protocol"`
			Scheduler   string           `json:"scheduler"`
			Method      string           `json:"method"`
			RealServers []map[string]any `json:"real_servers"`
		} `json:"virtual_servers"`
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("govs list -json printed invalid JSON: %v\n%s", err, out)
	}
	if l.Version != "test" || len(l.VirtualServers) != 1 {
		t.Fatalf("govs list -json: version %q, %d virtual servers; want test, 1:\n%s", l.Version, len(l.VirtualServers), out)
	}
	vs := l.VirtualServers[0]
	if vs.Address != "198.18.0.100:80" || vs.Protocol != "tcp" || vs.Scheduler != "rr" || vs.Method != "nat" || len(vs.RealServers) != 2 {
		t.Fatalf("govs list -json: virtual server %+v, want tcp 198.18.0.100:80 rr nat with 2 real servers", vs)
	}
	rs := vs.RealServers[0]
	want := map[string]any{"address": "198.19.0.11:80", "weight": 1.0, "resolved": true, "connections": 9.0,
		"active_connections": 5.0, "inactive_connections": 4.0, "packets": 501.0, "overloaded": false}
	for k, v := range want {
		if rs[k] != v {
			t.Errorf("govs list -json: real_servers[0].%s = %v, want %v", k, rs[k], v)
		}
	}
	// The listing is of servers only: counters are `govs stats`'s.
	var raw map[string]any
	json.Unmarshal([]byte(out), &raw)
	if _, ok := raw["counters"]; ok {
		t.Errorf("govs list -json has counters; want the virtual servers only:\n%s", out)
	}
}

func TestListJSONEmpty(t *testing.T) {
	sock := fakeGovs(t, `{"ready": true, "version": "test", "virtual_servers": null}`)
	stdout, stderr, code := runCLI(t, cmdList, "-json", "-control", sock)
	if code != 0 {
		t.Fatalf("govs list -json: exit code %d, stderr:\n%s", code, stderr)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(stdout), &raw); err != nil {
		t.Fatalf("govs list -json printed invalid JSON: %v\n%s", err, stdout)
	}
	if vs, ok := raw["virtual_servers"].([]any); !ok || len(vs) != 0 {
		t.Errorf("govs list -json of a govs without virtual servers: virtual_servers = %#v, want [] (scripts iterate over it)", raw["virtual_servers"])
	}
}

// TestStatsText: `govs stats` shows each real server's figures under its virtual server, and the
// outcome of the last reload.
func TestStatsText(t *testing.T) {
	sock := fakeGovs(t, statusJSON)
	stdout, stderr, code := runCLI(t, cmdStats, "-control", sock)
	if code != 0 {
		t.Fatalf("govs stats: exit code %d, stderr:\n%s", code, stderr)
	}
	lines := strings.Split(stdout, "\n")
	find := func(prefix string) int {
		for i, l := range lines {
			if strings.HasPrefix(l, prefix) {
				return i
			}
		}
		t.Fatalf("govs stats has no line starting %q:\n%s", prefix, stdout)
		return -1
	}
	reload := find("last reload: rejected at 2024-05-06T07:08:09Z")
	if !strings.Contains(lines[reload], "the running configuration stays") ||
		lines[reload+1] != "  /etc/govs/govs.toml:12: virtual_server[1].real_server[2].weight: 70000 is out of range" ||
		lines[reload+2] != "  /etc/govs/govs.toml:20: bogus: unknown key" {
		t.Errorf("govs stats shows the rejected reload as\n%s", strings.Join(lines[reload:reload+3], "\n"))
	}
	head := find("virtual server")
	for _, f := range []string{"weight", "active", "inactive", "packets", "resolved"} {
		if !strings.Contains(lines[head], f) {
			t.Errorf("govs stats's real-server table header %q lacks %q", lines[head], f)
		}
	}
	vs := find("TCP  198.18.0.100:80")
	if vs != head+1 {
		t.Errorf("the virtual server is on line %d, want right after the header (%d)", vs, head+1)
	}
	for i, want := range [][]string{
		{"->", "198.19.0.11:80", "1", "5", "4", "501", "true", "false"},
		{"->", "198.19.0.12:80", "3", "0", "0", "0", "false", "false"},
	} {
		if got := strings.Fields(lines[vs+1+i]); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("real server %d: %q, want the fields %q", i+1, lines[vs+1+i], want)
		}
	}

	// Before any reload, and after one that was applied.
	for _, tc := range []struct{ reload, want string }{
		{`null`, "last reload: none since govs started"},
		{`{"time": "2024-05-06T07:08:09Z", "applied": true, "error": ""}`, "last reload: applied at 2024-05-06T07:08:09Z"},
	} {
		sock := fakeGovs(t, `{"ready": true, "version": "test", "last_reload": `+tc.reload+`}`)
		stdout, _, _ := runCLI(t, cmdStats, "-control", sock)
		if !strings.Contains(stdout, "\n"+tc.want) {
			t.Errorf("govs stats with last_reload %s lacks %q:\n%s", tc.reload, tc.want, stdout)
		}
	}
}

// TestControlSocketFallback: a file that is not TOML and names no socket leads to the default
// socket, and says so.
func TestControlSocketFallback(t *testing.T) {
	sock := fakeGovs(t, statusJSON)
	old := config.DefaultControlSocket
	config.DefaultControlSocket = sock
	t.Cleanup(func() { config.DefaultControlSocket = old })
	f := writeFile(t, "govs.toml", "[dataplane\ninterfaces = [\"l0\"]\n")
	stdout, stderr, code := runCLI(t, cmdList, "-config", f)
	if code != 0 || !strings.Contains(stdout, "198.18.0.100:80") {
		t.Fatalf("govs list -config FILE: exit code %d, stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if want := "has no readable [control] socket: trying the default " + sock; !strings.Contains(stderr, want) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("govs list's stderr %q, want one line saying %q", stderr, want)
	}

	// A socket written wrong is an error with file:line, not a guess.
	f = writeFile(t, "govs.toml", "[control]\nsocket = \"relative.sock\"\n[dataplane]\nbogus = 1\n")
	_, stderr, code = runCLI(t, cmdList, "-config", f)
	if want := f + `:2: control.socket: "relative.sock" is not an absolute path`; code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("govs list with a relative socket: exit code %d, stderr %q; want 1 and %q", code, stderr, want)
	}
	// A file that cannot be read is an error.
	_, stderr, code = runCLI(t, cmdStats, "-config", filepath.Join(t.TempDir(), "nope.toml"))
	if code != 1 || !strings.Contains(stderr, "failed to read config") {
		t.Errorf("govs stats with a missing file: exit code %d, stderr %q; want 1 and a read error", code, stderr)
	}
}

// fakeDaemon records what reloadFile hands the daemon.
type fakeDaemon struct {
	reloadErr error
	reloaded  []*config.Config
	recorded  []error
	at        []time.Time
}

func (d *fakeDaemon) Reload(cfg *config.Config) error {
	d.reloaded = append(d.reloaded, cfg)
	return d.reloadErr
}

func (d *fakeDaemon) RecordReload(t time.Time, err error) {
	d.at = append(d.at, t)
	d.recorded = append(d.recorded, err)
}

// TestReloadFileRecords: every SIGHUP's outcome is recorded for `govs stats`, also a file that
// does not parse or validate and so never reaches the daemon's Reload.
func TestReloadFileRecords(t *testing.T) {
	valid := "[dataplane]\ninterfaces = [\"lo\"]\n" + vsTOML
	for _, tc := range []struct {
		name, src string
		reloadErr error
		reloads   int    // calls of Reload
		want      string // in the recorded error; "" = applied
	}{
		{"applied", valid, nil, 1, ""},
		{"refused by the daemon", valid, errors.New("control.socket cannot change on reload"), 1, "control.socket cannot change"},
		{"invalid", strings.Replace(valid, "weight = 3", "weight = -3", 1), nil, 0, ":13: virtual_server[1].real_server[2].weight: -3 is out of range"},
		{"two errors", strings.Replace(strings.Replace(valid, "weight = 3", "weight = -3", 1), `scheduler = "rr"`, `scheduler = "nope"`, 1), nil, 0, ":13: virtual_server[1].real_server[2].weight: -3 is out of range"},
		{"not TOML", valid + "[[virtual_server]\n", nil, 0, "invalid TOML"},
		{"missing interface", strings.Replace(valid, `"lo"`, `"govs-absent-if0"`, 1), nil, 0, `interface "govs-absent-if0" does not exist on this host`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := writeFile(t, "govs.toml", tc.src)
			d := &fakeDaemon{reloadErr: tc.reloadErr}
			var buf bytes.Buffer
			before := time.Now()
			reloadFile(d, f, slog.New(slog.NewJSONHandler(&buf, nil)))
			var logged []string
			for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				var r struct{ Msg, File, Error string }
				if err := json.Unmarshal([]byte(line), &r); line != "" && err != nil {
					t.Fatalf("%q: %v", line, err)
				}
				if line != "" {
					logged = append(logged, r.Msg)
				}
				if strings.HasPrefix(r.Msg, "reload rejected") && (r.File != f || r.Error == "" || !strings.HasSuffix(r.Msg, r.Error)) {
					t.Errorf("record %s: want the file and the error as fields", line)
				}
			}
			if len(d.reloaded) != tc.reloads {
				t.Errorf("Reload called %d times, want %d", len(d.reloaded), tc.reloads)
			}
			if len(d.recorded) != 1 {
				t.Fatalf("RecordReload called %d times, want once", len(d.recorded))
			}
			if d.at[0].Before(before) || d.at[0].After(time.Now()) {
				t.Errorf("recorded time %v, want the time of the attempt", d.at[0])
			}
			err := d.recorded[0]
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("recorded %v, want applied (nil)", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("recorded %v, want an error with %q", err, tc.want)
			}
			if tc.want != "" && (len(logged) != 1 || !strings.HasPrefix(logged[0], "reload rejected, the running configuration stays: ")) {
				t.Fatalf("logged %q, want one \"reload rejected\" message", logged)
			}
			// The log has one line per record: the errors, one per line in govs stats, joined.
			if tc.want != "" && (strings.Contains(logged[0], "\n") || !strings.Contains(logged[0], strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; "))) {
				t.Errorf("logged %q, want the errors of %q on one line, joined with \"; \"", logged[0], err)
			}
		})
	}
}

// TestFlagHelp: every command's -h names each flag's argument by its type. The flag package takes
// a back-quoted word in a usage string for the argument's name, so `govs list -h` showed
// "-json govs stats -json".
func TestFlagHelp(t *testing.T) {
	// A one-letter flag without an argument has its usage on the same line, after a tab.
	flagLine := regexp.MustCompile(`^  -[\w-]+( (string|int|uint|uint64|float|duration|value))?$|^  -\w\t`)
	var cmds [][]string
	for _, c := range commands {
		if c.name == "bench" {
			for _, sub := range []string{"gen", "replay", "live", "suite"} {
				cmds = append(cmds, []string{c.name, sub})
			}
			continue
		}
		cmds = append(cmds, []string{c.name})
	}
	for _, args := range cmds {
		c := args[0]
		var run func([]string) int
		for _, cmd := range commands {
			if cmd.name == c {
				run = cmd.run
			}
		}
		stdout, stderr, code := runCLI(t, run, append(args[1:], "-h")...)
		if code != 0 {
			t.Errorf("govs %s -h: exit %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
			continue
		}
		for _, line := range strings.Split(stdout+stderr, "\n") {
			if strings.HasPrefix(line, "  -") && !flagLine.MatchString(line) {
				t.Errorf("govs %s -h: flag line %q names its argument from the usage text", strings.Join(args, " "), line)
			}
		}
	}
}

// TestListStatsNoTrailingSpace: the tables' empty trailing cells leave no padding at line ends.
func TestListStatsNoTrailingSpace(t *testing.T) {
	sock := fakeGovs(t, statusJSON)
	for _, cmd := range []struct {
		name string
		run  func([]string) int
	}{{"list", cmdList}, {"stats", cmdStats}} {
		stdout, stderr, code := runCLI(t, cmd.run, "-control", sock)
		if code != 0 {
			t.Fatalf("govs %s: exit %d\n%s", cmd.name, code, stderr)
		}
		for i, line := range strings.Split(stdout, "\n") {
			if strings.TrimRight(line, " \t") != line {
				t.Errorf("govs %s: line %d %q ends in whitespace", cmd.name, i+1, line)
			}
		}
	}
}

// TestVersionFlag: govs -version and govs --version print what govs version prints.
func TestVersionFlag(t *testing.T) {
	want, _, _ := runCLI(t, dispatch, "version")
	if want != "govs "+version+"\n" {
		t.Fatalf("govs version printed %q", want)
	}
	for _, arg := range []string{"-version", "--version"} {
		if got, stderr, code := runCLI(t, dispatch, arg); got != want || code != 0 {
			t.Errorf("govs %s: %q (exit %d, stderr %q), want %q", arg, got, code, stderr, want)
		}
	}
}

// TestRunFileArgument: govs run takes the file as -config FILE or alone, as check-config does;
// more than one is refused. (The files here do not exist: the error is about reading them.)
func TestRunFileArgument(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none.toml")
	for _, args := range [][]string{{missing}, {"-config", missing}} {
		_, stderr, code := runCLI(t, cmdRun, args...)
		if code != 1 || !strings.Contains(stderr, "govs run: ") || !strings.Contains(stderr, "none.toml") || strings.Contains(stderr, "is required") {
			t.Errorf("govs run %v: exit %d, %q; want exit 1 and the file's read error", args, code, stderr)
		}
	}
	_, stderr, code := runCLI(t, cmdRun, "a.toml", "b.toml")
	if code != 2 || !strings.Contains(stderr, `govs run: unexpected "a.toml b.toml": give the configuration file once`) {
		t.Errorf("govs run a.toml b.toml: exit %d, %q", code, stderr)
	}
}
