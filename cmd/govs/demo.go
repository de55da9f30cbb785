package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/govs/govs/control"
	"github.com/govs/govs/lab"
)

// demoConfig is the embedded default: two virtual services (HTTP and UDP) on the demo topology's
// VIPs, IPv4 and IPv6, NAT to three real servers, round robin and weighted round robin.
var demoConfig = template.Must(template.New("demo").Parse(`# govs demo configuration (embedded default; see README.md for every key)
[dataplane]
interfaces = ["l0", "l1"]
workers = {{.Workers}}
{{- if .IO}}
io = "{{.IO}}"
{{- end}}

[control]
socket = "{{.Socket}}"

[[virtual_server]]
address   = "{{.VIP4}}:80"
protocol  = "tcp"
scheduler = "rr"
method    = "nat"
{{range .RS4}}
  [[virtual_server.real_server]]
  address = "{{.}}:80"
{{end}}
[[virtual_server]]
address   = "{{.VIP4}}:9000"
protocol  = "udp"
scheduler = "wrr"
method    = "nat"
{{range $i, $a := .RS4}}
  [[virtual_server.real_server]]
  address = "{{$a}}:9000"
  weight  = {{index $.Weights $i}}
{{end}}
[[virtual_server]]
address   = "[{{.VIP6}}]:80"
protocol  = "tcp"
scheduler = "rr"
method    = "nat"
{{range .RS6}}
  [[virtual_server.real_server]]
  address = "[{{.}}]:80"
{{end}}`))

func cmdDemo(args []string) int {
	fs := newFlags("demo", "demo [-requests N] [-workers N] [-io afpacket|afxdp] [-print-config]", `  sudo govs demo
  sudo govs demo -requests 600 -workers 1
  sudo govs demo -io afxdp     # the same through AF_XDP sockets and an XDP program (a queue per worker)
`)
	requests := fs.Int("requests", 300, "HTTP requests to send through each HTTP VIP, and UDP flows (of 3 datagrams each) through the UDP VIP")
	workers := fs.Int("workers", 2, "data-plane workers")
	ioMode := fs.String("io", "", "the data plane's packet I/O, [dataplane] io: afpacket (default) or afxdp (the demo gives the balancer's links a queue per worker)")
	printCfg := fs.Bool("print-config", false, "print the embedded configuration and exit")
	if ok, code := parse(fs, args); !ok {
		return code
	}
	switch *ioMode {
	case "", "afpacket":
	case "afxdp":
		if *workers < 1 {
			fmt.Fprintln(os.Stderr, "govs demo: -io afxdp wants -workers 1 or more (the demo gives each balancer link a queue per worker)")
			return 2
		}
	default:
		fmt.Fprintf(os.Stderr, "govs demo: -io %q: want afpacket or afxdp\n", *ioMode)
		return 2
	}
	if *printCfg {
		demoConfig.Execute(os.Stdout, demoData(nil, *workers, *ioMode, demoSocket))
		return 0
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "govs demo: needs root (it creates network namespaces); try `sudo make demo`")
		return 1
	}
	if err := runDemo(*requests, *workers, *ioMode); err != nil {
		fmt.Fprintln(os.Stderr, "govs demo:", err)
		return 1
	}
	return 0
}

// demoSocket is the control socket of the demo's govs, fixed so that what -print-config shows is
// what runs (and `govs stats -control /run/govs/demo.sock` reaches a running demo).
const demoSocket = "/run/govs/demo.sock"

type demoVars struct {
	Workers  int
	IO       string // [dataplane] io; "" leaves the default
	Socket   string
	VIP4     netip.Addr
	VIP6     netip.Addr
	RS4, RS6 []netip.Addr
	Weights  []int
}

func demoData(t *lab.Topology, workers int, io, sock string) demoVars {
	v := demoVars{Workers: workers, IO: io, Socket: sock, Weights: []int{3, 2, 1}}
	if t == nil {
		v.VIP4, v.VIP6 = netip.MustParseAddr("198.18.0.100"), netip.MustParseAddr("2001:2::100")
		for i := 0; i < 3; i++ {
			v.RS4 = append(v.RS4, netip.AddrFrom4([4]byte{198, 19, 0, byte(11 + i)}))
			v.RS6 = append(v.RS6, netip.MustParseAddr(fmt.Sprintf("2001:2:0:1::%x", 0x11+i)))
		}
		return v
	}
	v.VIP4, v.VIP6, v.RS4, v.RS6 = t.VIP4, t.VIP6, t.ServerAddrs4, t.ServerAddrs6
	return v
}

func runDemo(requests, workers int, ioMode string) error {
	// The socket is fixed (see demoSocket), so one demo runs at a time.
	if err := otherGovs(demoSocket, ""); err != nil {
		return err
	}
	// A demo killed outright (SIGKILL) could not tear down; its namespaces go now.
	if removed, err := lab.RemoveStale("govs-demo"); len(removed) > 0 || err != nil {
		fmt.Printf("== removed %d namespaces of an earlier demo that was killed\n", len(removed))
		if err != nil {
			fmt.Fprintf(os.Stderr, "govs demo: could not remove every stale namespace: %v\n", err)
		}
	}
	fmt.Println("== building the demo topology: client — br0 — [l0 govs l1] — br1 — rs1 rs2 rs3 (network namespaces)")
	opts := lab.Options{Method: "nat", IPv6: true, Prefix: "govs-demo"}
	if ioMode == "afxdp" {
		opts.Queues = workers // an AF_XDP worker reads and sends through queues of its own
	}
	topo, err := lab.New(opts)
	if err != nil {
		return err
	}
	defer func() {
		topo.Close()
		fmt.Println("== torn down: every demo namespace removed")
	}()
	// Tear down on ^C, kill and hang-up too. Output piped into a reader that quits early (| head)
	// must not kill the demo before it tears down: writes to the closed pipe fail instead.
	stopSig := make(chan os.Signal, 1)
	signal.Notify(stopSig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(stopSig)
	signal.Ignore(syscall.SIGPIPE)

	servers, err := lab.StartServers(topo)
	if err != nil {
		return err
	}
	defer servers.Close()

	dir, err := os.MkdirTemp("", "govs-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock := demoSocket
	var cfg bytes.Buffer
	if err := demoConfig.Execute(&cfg, demoData(topo, workers, ioMode, sock)); err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "govs.toml")
	if err := os.WriteFile(cfgPath, cfg.Bytes(), 0o644); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	show := "govs demo -print-config"
	if ioMode != "" {
		show += " -io " + ioMode
	}
	fmt.Printf("== starting govs in namespace %s with the embedded configuration (%s shows it), control socket %s\n", topo.Balancer.Name, show, sock)
	cmd := topo.Balancer.Command(self, "run", "-config", cfgPath)
	var logs lab.Output
	cmd.Stdout, cmd.Stderr = &logs, &logs
	// Should the demo itself be killed outright, govs stops with it (and the next demo removes the
	// namespaces).
	g, err := startTied(cmd)
	if err != nil {
		return err
	}
	defer func() {
		if err := g.stop(5 * time.Second); err != nil {
			fmt.Printf("== govs exited: %v\n", err)
		}
		fmt.Printf("== govs log:\n%s", indent(logs.String()))
	}()
	if err := waitReady(sock, cfgPath, g.done, 15*time.Second); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	go func() {
		select {
		case <-stopSig:
			cancel()
		case <-ctx.Done():
		}
	}()
	// Traffic stops as soon as govs exits, and the demo fails, rather than counting timeouts.
	err = whileRunning(ctx, g, func(ctx context.Context) {
		for _, target := range []string{net.JoinHostPort(topo.VIP4.String(), "80"), net.JoinHostPort(topo.VIP6.String(), "80")} {
			fmt.Printf("\n== %d HTTP requests, one connection each, to http://%s/ (scheduler rr)\n", requests, target)
			counts, failed := demoHTTP(ctx, topo.Client, target, requests)
			printCounts(counts, failed)
		}
		udpTarget := net.JoinHostPort(topo.VIP4.String(), "9000")
		fmt.Printf("\n== %d UDP flows to %s, 3 datagrams each (scheduler wrr, weights 3:2:1)\n", requests, udpTarget)
		counts, failed := demoUDP(ctx, topo.Client, udpTarget, requests)
		printCounts(counts, failed)
	})
	if err != nil {
		return err
	}

	fmt.Println("\n== govs list")
	qctx, qcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer qcancel()
	st, err := control.QueryStatus(qctx, sock)
	if err != nil {
		return err
	}
	printList(os.Stdout, st)
	fmt.Println("\n== govs stats")
	printStats(os.Stdout, st)
	return nil
}

// waitReady waits until the govs started with the configuration file cfgPath answers ready on
// sock. Another govs answering there (it has the socket, so ours cannot start) is an error at once.
func waitReady(sock, cfgPath string, exited <-chan struct{}, max time.Duration) error {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			if err := otherGovs(sock, cfgPath); err != nil {
				return err
			}
			return fmt.Errorf("govs exited during start-up (its log is above)")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := control.QueryStatus(ctx, sock)
		cancel()
		if err == nil && st.Config != cfgPath {
			return sockTaken(sock, st)
		}
		if err == nil && st.Ready {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("govs was not ready within %v", max)
}

// otherGovs says whether a govs other than the one running cfgPath ("": any govs) answers on sock.
func otherGovs(sock, cfgPath string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := control.QueryStatus(ctx, sock)
	if err != nil || (cfgPath != "" && st.Config == cfgPath) {
		return nil
	}
	return sockTaken(sock, st)
}

// sockTaken is the error for sock served by another govs, whose status is st.
func sockTaken(sock string, st *control.Status) error {
	// Every demo writes its configuration into a fresh os.MkdirTemp("", "govs-demo-").
	if strings.HasPrefix(filepath.Base(filepath.Dir(st.Config)), "govs-demo-") {
		return fmt.Errorf("another govs demo is running (socket %s); wait for it to end", sock)
	}
	return fmt.Errorf("another govs (configuration %s) serves the demo's control socket %s; stop it first", st.Config, sock)
}

// tiedProc is a child process started by startTied.
type tiedProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result, set before done is closed
}

// startTied starts cmd so that the kernel sends it SIGTERM should this process die outright.
//
// The parent-death signal fires when the *thread* that forked the child exits (golang/go#27505),
// and the runtime ends threads: every goroutine that leaves a thread locked in a network namespace
// (lab's doInNetns, used for each client connection) takes its thread down with it, and that may be
// the thread that forked govs. So a goroutine locks a thread, forks from it and holds it, blocked in
// Wait, until the child exits.
func startTied(cmd *exec.Cmd) (*tiedProc, error) {
	stopWithParent(cmd)
	p := &tiedProc{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("failed to start %s: %w", cmd.Path, err)
	}
	return p, nil
}

// exited says whether the process has exited.
func (p *tiedProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after grace, and waits for the process. It returns an error
// saying how the process ended if it exited by itself before stop or failed.
func (p *tiedProc) stop(grace time.Duration) error {
	early := p.exited()
	if !early {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
	switch {
	case early && p.err == nil:
		return errors.New("exit status 0, before the demo stopped it")
	case early:
		return fmt.Errorf("%v, before the demo stopped it", p.err)
	}
	return p.err
}

// whileRunning runs fn with a context that ends when p exits, and fails if p exits before fn returns.
func whileRunning(ctx context.Context, p *tiedProc, fn func(ctx context.Context)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	fn(ctx)
	if p.exited() {
		return fmt.Errorf("govs exited while the demo was running (its log is above)")
	}
	return nil
}

func demoHTTP(ctx context.Context, client *lab.NS, target string, n int) (map[string]int, int) {
	hc := client.HTTPClient(false)
	hc.Timeout = 5 * time.Second
	var mu sync.Mutex
	counts := map[string]int{}
	failed := 0
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := 0; i < n && ctx.Err() == nil; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+target+"/", nil)
			resp, err := hc.Do(req)
			var body []byte
			if err == nil {
				body, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				return
			}
			counts[strings.TrimSpace(string(body))]++
		}()
	}
	wg.Wait()
	return counts, failed
}

func demoUDP(ctx context.Context, client *lab.NS, target string, flows int) (map[string]int, int) {
	counts := map[string]int{}
	failed := 0
	for i := 0; i < flows && ctx.Err() == nil; i++ {
		c, err := client.Dial(ctx, "udp", target)
		if err != nil {
			failed++
			continue
		}
		server := ""
		for j := 0; j < 3; j++ {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := fmt.Fprintf(c, "flow %d datagram %d", i, j); err != nil {
				break
			}
			buf := make([]byte, 512)
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			name, _, _ := strings.Cut(string(buf[:n]), ":")
			server = name
		}
		c.Close()
		if server == "" {
			failed++
			continue
		}
		counts[server]++
	}
	return counts, failed
}

func printCounts(counts map[string]int, failed int) {
	names := make([]string, 0, len(counts))
	total := 0
	for k, v := range counts {
		names = append(names, k)
		total += v
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Printf("   %-4s answered %4d  %s\n", k, counts[k], strings.Repeat("#", counts[k]*50/max(total, 1)))
	}
	fmt.Printf("   failed: %d\n", failed)
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "   " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n   ") + "\n"
}
