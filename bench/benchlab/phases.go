package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/govs/govs/lab"
)

// The lab's real servers' eth0 inside each server namespace, and the service ports.
const (
	udpPort  = lab.UDPEchoPort
	httpPort = lab.HTTPPort
)

// kernelRuleset is the kernel's balancer: stateless round robin at the first packet of a
// connection, conntrack does the rest (replies un-NATed, later packets follow the first).
// No port in the mapping: TCP :80 and UDP :9000 keep their ports.
const kernelRuleset = `table ip lab {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr %s dnat to numgen inc mod %d map { %s }
	}
}
`

// runKernelPhase makes the balancer namespace's kernel the balancer (VIP on l0, forwarding,
// nftables DNAT), measures, and undoes all of it.
func runKernelPhase(ctx context.Context, topo *lab.Topology, o options, name string) *phaseResult {
	res := &phaseResult{Name: name}
	logf("kernel phase: VIP %s on l0, ip_forward=1, nft dnat numgen over %d servers", topo.VIP4, len(topo.Servers))
	if err := kernelSetup(ctx, topo); err != nil {
		res.Error = err.Error()
	} else {
		measure(ctx, topo, o, res, nil, natSink)
	}
	if err := kernelTeardown(topo); err != nil {
		res.addError(err.Error())
	}
	return res
}

func kernelSetup(ctx context.Context, topo *lab.Topology) error {
	if err := topo.Balancer.SetSysctl("net.ipv4.ip_forward", "1"); err != nil {
		return err
	}
	if err := runIn(ctx, topo.Balancer, "", "ip", "addr", "add", topo.VIP4.String()+"/32", "dev", "l0"); err != nil {
		return err
	}
	var elems []string
	for i, a := range topo.ServerAddrs4 {
		elems = append(elems, fmt.Sprintf("%d : %s", i, a))
	}
	rules := fmt.Sprintf(kernelRuleset, topo.VIP4, len(topo.ServerAddrs4), strings.Join(elems, ", "))
	return runIn(ctx, topo.Balancer, rules, "nft", "-f", "-")
}

// kernelTeardown removes the VIP, the table and forwarding, whatever state setup reached, and
// checks forwarding is off again so the govs phase measures govs and not the kernel.
func kernelTeardown(topo *lab.Topology) error {
	ctx := context.Background()
	var errs []error
	if err := runIn(ctx, topo.Balancer, "", "nft", "list", "table", "ip", "lab"); err == nil {
		errs = append(errs, runIn(ctx, topo.Balancer, "", "nft", "delete", "table", "ip", "lab"))
	}
	if err := runIn(ctx, topo.Balancer, "", "sh", "-c", "ip -o addr show dev l0 | grep -q ' "+topo.VIP4.String()+"/32 '"); err == nil {
		errs = append(errs, runIn(ctx, topo.Balancer, "", "ip", "addr", "del", topo.VIP4.String()+"/32", "dev", "l0"))
	}
	errs = append(errs, topo.Balancer.SetSysctl("net.ipv4.ip_forward", "0"))
	if v, err := topo.Balancer.Sysctl("net.ipv4.ip_forward"); err != nil || v != "0" {
		errs = append(errs, fmt.Errorf("failed to turn forwarding off in %s: ip_forward=%q (%v)", topo.Balancer.Name, v, err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("failed to undo the kernel balancer: %w", err)
	}
	return nil
}

// runGeneratorCalibration floods into a drop at the switch port the client is attached to, so
// the generator's own ceiling is known: if a balancer's delivered rate comes close to it, the
// generator, not the balancer, was the limit.
func runGeneratorCalibration(ctx context.Context, topo *lab.Topology, o options) *udpResult {
	res := &udpResult{}
	mac, err := topo.Balancer.HardwareAddr("l0")
	if err != nil {
		res.Error = err.Error()
		return res
	}
	logf("generator calibration: flood dropped at the switch's ingress")
	udpFlood(ctx, topo, o, mac, res, true, 0, natSink)
	return res
}

// govsProc is a running `govs run` in the balancer namespace.
type govsProc struct {
	cmd  *exec.Cmd
	sock string
	log  string
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid after done
}

// govsVariant is how a govs phase configures govs: the forwarding method of its services (and
// the tunnel under tun), and its workers.
type govsVariant struct {
	name    string
	method  string // "nat", "tun" or "fullnat"
	tunnel  string // under tun: "ipip" or "gue"
	workers int    // one per balancer CPU
	udpOnly bool   // no HTTP measurement (the tun phases: the lab's NAT servers cannot answer through a tunnel; fullnat: compared with NAT on the UDP flood alone)
	peak    bool   // search the loss-free peak too
}

// guePort is the real servers' GUE port in the gue phase: the sink counts and drops the tunnel's
// datagrams there, no server has to decapsulate them.
const guePort = 6080

// The govs phases: NAT (the figure the kernel's DNAT is compared with), tun with IPIP and with
// GUE on the same topology, whose encapsulated frames leave by l1 towards the NAT servers'
// addresses and are counted where the UDP flood's are, and fullnat, whose datagrams leave by l1
// from fullnatLocals.
var (
	govsNAT     = govsVariant{name: "govs", method: "nat", workers: 1, peak: true}
	govsTun     = govsVariant{name: "govs tun ipip", method: "tun", tunnel: "ipip", workers: 1, udpOnly: true}
	govsGUE     = govsVariant{name: "govs tun gue", method: "tun", tunnel: "gue", workers: 1, udpOnly: true}
	govsFullNAT = govsVariant{name: "govs fullnat", method: "fullnat", workers: 1, udpOnly: true}
	govsDR      = govsVariant{name: "govs dr", method: "dr", workers: 1, udpOnly: true}
)

// runKernelDRPhase measures the kernel's own direct routing: an nftables netdev ingress rule on
// l0 sends each frame to the VIP on to a real server's MAC address through l1 (fwd ip to ...
// device, neighbour resolution included), the IP packet untouched, before the IP stack, as
// govs's DR does. IPVS, the kernel's LVS-DR, is not built into this kernel. The VIP is on l0
// for ARP only.
func runKernelDRPhase(ctx context.Context, topo *lab.Topology, o options) *phaseResult {
	res := &phaseResult{Name: "kernel(nft fwd) dr"}
	logf("kernel dr phase: VIP %s on l0 (ARP), nft netdev fwd to numgen over %d servers via l1", topo.VIP4, len(topo.ServerAddrs4))
	var elems []string
	for i, a := range topo.ServerAddrs4 {
		elems = append(elems, fmt.Sprintf("%d : %s", i, a))
	}
	rules := fmt.Sprintf(kernelDRRuleset, topo.VIP4, udpPort, len(topo.ServerAddrs4), strings.Join(elems, ", "))
	err := runIn(ctx, topo.Balancer, "", "ip", "addr", "add", topo.VIP4.String()+"/32", "dev", "l0")
	if err == nil {
		err = runIn(ctx, topo.Balancer, rules, "nft", "-f", "-")
	}
	if err != nil {
		res.Error = err.Error()
	} else {
		o.http = false
		measure(ctx, topo, o, res, nil, drSink(topo))
	}
	bg := context.Background()
	if runIn(bg, topo.Balancer, "", "nft", "list", "table", "netdev", "labdr") == nil {
		if err := runIn(bg, topo.Balancer, "", "nft", "delete", "table", "netdev", "labdr"); err != nil {
			res.addError(err.Error())
		}
	}
	if err := kernelTeardown(topo); err != nil {
		res.addError(err.Error())
	}
	return res
}

const kernelDRRuleset = `table netdev labdr {
  chain in {
    type filter hook ingress device "l0" priority 0;
    ip daddr %s udp dport %d fwd ip to numgen inc mod %d map { %s } device "l1"
  }
}
`

// drSink is what leaves the balancer in the DR phases: the flood, still addressed to the VIP.
// The real servers do not hold the VIP in this lab, so nothing answers the probe.
func drSink(topo *lab.Topology) sinkMatch {
	return sinkMatch{rule: fmt.Sprintf("ip daddr %s udp dport %d", topo.VIP4, udpPort), what: "UDP datagrams to the VIP, on to the real servers' MAC addresses"}
}

// fullnatLocals returns the fullnat phase's local_addresses: .50 and .51 of the server segment
// (l1's /24), which no namespace has and govs answers ARP for, so the real servers' echoes reach
// govs on their own segment whatever their default route.
func fullnatLocals(topo *lab.Topology) []netip.Addr {
	l1 := topo.BalancerL1Addr4.As4()
	return []netip.Addr{netip.AddrFrom4([4]byte{l1[0], l1[1], l1[2], 50}), netip.AddrFrom4([4]byte{l1[0], l1[1], l1[2], 51})}
}

// joinAddrs formats each address with format (%s for an nft set, %q for a TOML array) and joins
// them with commas.
func joinAddrs(addrs []netip.Addr, format string) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = fmt.Sprintf(format, a.String())
	}
	return strings.Join(s, ", ")
}

// runGovsPhase starts govs as v says with its workers pinned to the balancer CPUs, waits until
// it is ready, measures, and stops it.
func runGovsPhase(ctx context.Context, topo *lab.Topology, o options, v govsVariant) *phaseResult {
	res := &phaseResult{Name: v.name}
	dir, err := os.MkdirTemp("", "benchlab-govs-")
	if err != nil {
		res.Error = fmt.Sprintf("failed to make a directory for govs's config: %v", err)
		return res
	}
	defer os.RemoveAll(dir)
	threads, _ := napiThreads("l0")
	g, err := startGovs(ctx, topo, o, v, dir)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer func() {
		if err := g.stop(); err != nil {
			logf("govs: %v", err)
		}
	}()
	if o.io == "afxdp" && o.xdpMode != "generic" && o.xdpNAPI != "sender" {
		// Native XDP on veth runs in l0's own NAPI, where the frame was sent into the veth (the
		// load CPU) unless the NAPI is a thread: pinned to the balancer CPU, the balancer's
		// receive work is on the balancer core, as RPS puts it there for the kernel phase.
		setThreaded := func(v string) error {
			return runIn(context.Background(), topo.Balancer, "", "sh", "-c", "echo "+v+" > /sys/class/net/l0/threaded")
		}
		if err := setThreaded("1"); err != nil {
			res.Error = err.Error()
			return res
		}
		defer func() {
			if err := setThreaded("0"); err != nil {
				res.addError(err.Error())
			}
		}()
		// One thread per queue: queue q's goes to the CPU of the worker that reads it (q mod
		// workers; worker i runs on the i-th balancer CPU).
		if err := pinNewNAPIThreads("l0", threads, o.queues(), o.balancerCPUs(v.workers)); err != nil {
			res.Error = err.Error()
			return res
		}
	}
	if v.udpOnly {
		o.http = false
	}
	measure(ctx, topo, o, res, g, sinkFor(topo, v))
	if v.peak && o.peak && o.rate == 0 && ctx.Err() == nil {
		if u, ok := udpOK(res); ok {
			res.Peak = findPeak(ctx, topo, o, u, g.cmd.Process.Pid)
		}
	}
	if st, err := govsStats(ctx, o.govs, g.sock); err == nil {
		res.Govs = st
	}
	select {
	case <-g.done:
		res.addError("govs exited during the measurement: " + g.exitReason())
	default:
	}
	return res
}

func govsConfig(topo *lab.Topology, sock string, o options, v govsVariant) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# written by bench/benchlab\n[dataplane]\ninterfaces = [\"l0\", \"l1\"]\nworkers = %d\n", v.workers)
	if o.rxMode != "" {
		fmt.Fprintf(&b, "rx_mode = %q\n", o.rxMode)
	}
	if o.priority != 0 {
		fmt.Fprintf(&b, "worker_priority = %d\n", o.priority)
	}
	if o.io != "" {
		fmt.Fprintf(&b, "io = %q\n", o.io)
	}
	if o.xdpMode != "" {
		fmt.Fprintf(&b, "xdp_mode = %q\n", o.xdpMode)
	}
	if o.xdpIRQDefer != "" {
		fmt.Fprintf(&b, "xdp_irq_defer = %q\n", o.xdpIRQDefer)
	}
	fmt.Fprintf(&b, "\n[control]\nsocket = %q\n", sock)
	for _, svc := range []struct {
		proto string
		port  int
	}{{"tcp", httpPort}, {"udp", udpPort}} {
		fmt.Fprintf(&b, "\n[[virtual_server]]\naddress = \"%s:%d\"\nprotocol = %q\nscheduler = \"rr\"\nmethod = %q\n", topo.VIP4, svc.port, svc.proto, v.method)
		if v.tunnel != "" {
			fmt.Fprintf(&b, "tunnel = %q\n", v.tunnel)
		}
		if v.tunnel == "gue" {
			fmt.Fprintf(&b, "tunnel_port = %d\n", guePort)
		}
		if v.method == "fullnat" {
			fmt.Fprintf(&b, "local_addresses = [%s]\n", joinAddrs(fullnatLocals(topo), "%q"))
		}
		for _, a := range topo.ServerAddrs4 {
			fmt.Fprintf(&b, "\n  [[virtual_server.real_server]]\n  address = \"%s:%d\"\n", a, svc.port)
		}
	}
	return b.String()
}

func startGovs(ctx context.Context, topo *lab.Topology, o options, v govsVariant, dir string) (*govsProc, error) {
	bin, err := filepath.Abs(o.govs)
	if err != nil {
		return nil, fmt.Errorf("failed to locate govs binary %s: %w", o.govs, err)
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("failed to find the govs binary: %w (run `make build` or pass -govs)", err)
	}
	g := &govsProc{sock: filepath.Join(dir, "govs.sock"), log: filepath.Join(dir, "govs.log"), done: make(chan struct{})}
	cfgPath := filepath.Join(dir, "govs.toml")
	if err := os.WriteFile(cfgPath, []byte(govsConfig(topo, g.sock, o, v)), 0o644); err != nil {
		return nil, fmt.Errorf("failed to write govs's config: %w", err)
	}
	logFile, err := os.Create(g.log)
	if err != nil {
		return nil, fmt.Errorf("failed to create govs's log: %w", err)
	}
	// taskset execs ip, which execs govs: one process, pinned to the balancer CPUs.
	g.cmd = exec.Command("taskset", "-c", cpuList(o.balancerCPUs(v.workers)), "ip", "netns", "exec", topo.Balancer.Name, bin, "run", "-config", cfgPath)
	g.cmd.Stdout, g.cmd.Stderr = logFile, logFile
	// If benchlab dies, govs goes too.
	err = startTied(g.cmd, g.done, &g.err)
	logFile.Close() // govs has its own descriptor
	if err != nil {
		return nil, fmt.Errorf("failed to start govs: %w", err)
	}
	logf("%s phase: started %s (pid %d, workers=%d, CPUs %s), waiting for ready", v.name, bin, g.cmd.Process.Pid, v.workers, cpuList(o.balancerCPUs(v.workers)))
	var last error
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-g.done:
			return nil, fmt.Errorf("govs exited before becoming ready: %s", g.exitReason())
		default:
		}
		st, err := govsStats(ctx, bin, g.sock)
		if err == nil && st.Ready {
			return g, nil
		}
		if err == nil {
			err = errors.New(`stats say "ready": false`)
		}
		last = err
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			_ = g.stop()
			return nil, err
		}
	}
	_ = g.stop()
	return nil, fmt.Errorf("govs not ready after 20s (last: %v); its log:\n%s", last, tail(g.log, 2000))
}

// startTied starts cmd so that it gets SIGTERM if this process dies (Pdeathsig, which fires
// when the *thread* that forked exits: a goroutine holds that thread locked until cmd has
// exited), then stores Wait's result in exitErr and closes done.
func startTied(cmd *exec.Cmd, done chan<- struct{}, exitErr *error) error {
	setPdeathsig(cmd)
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(done)
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		*exitErr = cmd.Wait()
	}()
	return <-started
}

// exitReason describes how govs ended, with the end of its log. Only after done.
func (g *govsProc) exitReason() string {
	return fmt.Sprintf("%v; its log ends:\n%s", g.err, tail(g.log, 2000))
}

// stop sends SIGTERM, waits up to 10 s, then kills.
func (g *govsProc) stop() error {
	select {
	case <-g.done:
		return nil
	default:
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = g.cmd.Process.Kill()
	select {
	case <-g.done:
		return errors.New("govs ignored SIGTERM for 10s and was killed")
	case <-time.After(5 * time.Second):
		return fmt.Errorf("govs (pid %d) does not exit even after SIGKILL", g.cmd.Process.Pid)
	}
}

// govsStatus is the part of `govs stats -json` the report keeps.
type govsStatus struct {
	Ready      bool              `json:"ready"`
	Workers    int               `json:"workers"`
	Counters   map[string]uint64 `json:"counters"`
	DropsTotal uint64            `json:"drops_total"`
	Drops      map[string]uint64 `json:"drops"`
	Rings      struct {
		Packets uint64 `json:"packets"`
		Drops   uint64 `json:"drops"`
	} `json:"rings"`
}

func govsStats(ctx context.Context, bin, sock string) (*govsStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "stats", "-control", sock, "-json").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("govs stats: %w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("govs stats: %w", err)
	}
	var st govsStatus
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("govs stats: bad JSON: %w", err)
	}
	return &st, nil
}

// tail returns the last n bytes of file path, for error messages.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		_, _ = f.Seek(fi.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, n))
	return strings.TrimSpace(string(b))
}

// sinkMatch is what the sink's drop rule matches and counts: the flood as it leaves the balancer.
type sinkMatch struct {
	rule string // nft match
	what string // for messages
	echo bool   // the real servers answer the flood's probe (not through a tunnel: the lab's servers do not decapsulate)
}

var natSink = sinkMatch{rule: fmt.Sprintf("udp dport %d", udpPort), what: "UDP datagrams to the real servers' port", echo: true}

// sinkFor returns what leaves the balancer in phase v.
func sinkFor(topo *lab.Topology, v govsVariant) sinkMatch {
	if v.method == "dr" {
		return drSink(topo)
	}
	if v.method == "fullnat" {
		return sinkMatch{rule: fmt.Sprintf("ip saddr { %s } udp dport %d", joinAddrs(fullnatLocals(topo), "%s"), udpPort), what: "UDP datagrams from the local addresses to the real servers' port", echo: true}
	}
	switch v.tunnel {
	case "ipip":
		return sinkMatch{rule: "ip protocol 4", what: "IPIP packets"}
	case "gue":
		return sinkMatch{rule: fmt.Sprintf("udp dport %d", guePort), what: "GUE datagrams"}
	}
	return natSink
}

// measure runs the probes, the UDP flood and wrk against the VIP, filling res. g is nil for the
// kernel phase; sink says what the balancer sends on.
func measure(ctx context.Context, topo *lab.Topology, o options, res *phaseResult, g *govsProc, sink sinkMatch) {
	// A fresh neighbour entry for the VIP: the phase before may have left the kernel's MAC.
	_ = runIn(ctx, topo.Client, "", "ip", "neigh", "flush", "to", topo.VIP4.String())

	res.UDP = &udpResult{}
	mac, err := probeUDP(ctx, topo, sink.echo)
	if err != nil {
		res.UDP.Error = err.Error()
	} else {
		res.UDP.VIPMAC = mac.String()
		pid := 0
		if g != nil {
			pid = g.cmd.Process.Pid
		}
		udpFlood(ctx, topo, o, mac, res.UDP, false, pid, sink)
	}
	if ctx.Err() != nil || !o.http {
		return
	}
	res.HTTP = &httpResult{Threads: 2, Conns: 50}
	if err := probeHTTP(ctx, topo); err != nil {
		res.HTTP.Error = err.Error()
		if o.single {
			res.HTTPSingle = &httpResult{Threads: 1, Conns: 1, Error: res.HTTP.Error}
		}
		return
	}
	runWrk(ctx, topo, o, res.HTTP)
	if o.single && ctx.Err() == nil {
		res.HTTPSingle = &httpResult{Threads: 1, Conns: 1}
		runWrk(ctx, topo, o, res.HTTPSingle)
	}
}

// probeUDP sends datagrams to the VIP's UDP echo until one is answered by a real server and
// returns the MAC the client's kernel resolved for the VIP, which the generator then uses. Without
// echo no answer is awaited (the datagrams leave through a tunnel the lab's servers do not end):
// the VIP must only resolve.
func probeUDP(ctx context.Context, topo *lab.Topology, echo bool) (net.HardwareAddr, error) {
	addr := net.JoinHostPort(topo.VIP4.String(), strconv.Itoa(udpPort))
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	c, err := topo.Client.Dial(dctx, "udp", addr)
	cancel()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	buf := make([]byte, 256)
	var answered string
	for try := 0; try < 5 && answered == ""; try++ {
		if _, err := c.Write([]byte("benchlab-probe")); err != nil {
			return nil, fmt.Errorf("failed to send a UDP probe to %s: %w", addr, err)
		}
		if !echo {
			if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
				return nil, err
			}
			if mac, err := neighMAC(topo); err == nil {
				return mac, nil
			}
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if n, err := c.Read(buf); err == nil && strings.HasPrefix(string(buf[:n]), "rs") {
			answered = string(buf[:n])
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	mac, err := neighMAC(topo)
	if err != nil {
		return nil, err
	}
	if answered == "" {
		return nil, fmt.Errorf("no UDP echo through the VIP %s after 5 tries (the VIP resolved to %s): not forwarding UDP", addr, mac)
	}
	return mac, nil
}

// probeHTTP checks one request through the VIP before wrk is let loose.
func probeHTTP(ctx context.Context, topo *lab.Topology) error {
	hc := topo.Client.HTTPClient(false)
	hc.Timeout = 3 * time.Second
	url := fmt.Sprintf("http://%s:%d/", topo.VIP4, httpPort)
	var last error
	for try := 0; try < 3; try++ {
		resp, err := hc.Get(url)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 100))
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.HasPrefix(string(body), "rs") {
				return nil
			}
			err = fmt.Errorf("status %d, body %q", resp.StatusCode, body)
		}
		last = err
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("no HTTP answer through the VIP (GET %s): %w", url, last)
}

// dropRuleset drops the flood at each real server's ingress, after the veth has counted it, so
// the servers neither echo it back through the balancer nor spend CPU on the UDP stack.
//
// The generator's calibration run drops the flood where it enters the switch instead (device
// "cl"), so it measures what the generator and the client's veth alone can push.
const dropRuleset = `table netdev benchlab {
	chain in {
		type filter hook ingress device %q priority -500; policy accept;
		%s counter drop
	}
}
`

// sinkCounted reads the packets the sink's drop rule in ns matched so far.
func sinkCounted(ctx context.Context, ns *lab.NS) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := nsCommand(ctx, ns, "nft", "list", "table", "netdev", "benchlab").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("failed to read the sink's counter in %s: %w: %s", ns.Name, err, strings.TrimSpace(string(out)))
	}
	return parseNftCounter(string(out))
}

// parseNftCounter returns the packets of the first "counter packets N" in nft's listing.
func parseNftCounter(listing string) (uint64, error) {
	_, rest, ok := strings.Cut(listing, "counter packets ")
	if !ok {
		return 0, fmt.Errorf("no counter in the sink's rules: %q", listing)
	}
	n, err := strconv.ParseUint(strings.Fields(rest)[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad counter in the sink's rules: %w", err)
	}
	return n, nil
}

// counterSnap is one reading of everything the UDP measurement compares.
type counterSnap struct {
	at        time.Time
	generated uint64
	clientTx  uint64
	serverRx  []uint64
	cpu       map[int]cpuTimes
	cpuAt     time.Time // when cpu was read
	softnet   map[int]softnetStat
	ctxsw     uint64 // govs's context switches, all threads; 0 without govs
	utime     uint64 // govs's (or a forwarder's) user time in ticks; 0 without one
}

// snapshot reads the counters; pid is govs's process, 0 in the kernel phase.
func snapshot(topo *lab.Topology, sinks []*lab.NS, dev string, sent *atomic.Uint64, pid int) (counterSnap, error) {
	s := counterSnap{at: time.Now(), generated: sent.Load()}
	var err error
	if _, s.clientTx, _, err = linkCounters(topo.Client, lab.ClientIface); err != nil {
		return s, err
	}
	for _, ns := range sinks {
		rx, _, _, err := linkCounters(ns, dev)
		if err != nil {
			return s, err
		}
		s.serverRx = append(s.serverRx, rx)
	}
	s.cpuAt = time.Now()
	if s.cpu, err = readCPUTimes(); err != nil {
		return s, err
	}
	s.softnet, _ = readSoftnet()
	if pid != 0 {
		s.ctxsw, _ = processCtxSwitches(pid)
		s.utime, _ = processUserTicks(pid)
	}
	return s, nil
}

// udpFlood sends the 64-byte flood to dst (the VIP's MAC) for warmup + duration and counts what
// the real servers received in the window after the warmup. pid is govs's process (0: none).
func udpFlood(ctx context.Context, topo *lab.Topology, o options, dst net.HardwareAddr, res *udpResult, calibrate bool, pid int, sink sinkMatch) {
	srcMAC, err := topo.Client.HardwareAddr(lab.ClientIface)
	if err != nil {
		res.Error = err.Error()
		return
	}
	frames, err := buildFrames(flowSpec{
		SrcMAC: srcMAC, DstMAC: dst, Src: topo.ClientAddr4, Dst: topo.VIP4,
		DstPort: udpPort, FirstPort: 1024, Flows: o.flows, FrameLen: o.frameLen,
	})
	if err != nil {
		res.Error = err.Error()
		return
	}
	res.Flows, res.FrameLen = o.flows, o.frameLen
	sinks, dev := topo.Servers, lab.ServerIface
	switch {
	case calibrate:
		sinks, dev = []*lab.NS{topo.Switch}, "cl"
	case o.sink == "switch":
		sinks, dev = []*lab.NS{topo.Switch}, "lb1"
	}
	res.CountedAt = dev + " rx_packets in " + sinks[0].Name
	if len(sinks) > 1 {
		res.CountedAt = fmt.Sprintf("%s rx_packets in %d real servers", dev, len(sinks))
	}
	defer func() {
		for _, ns := range sinks {
			_ = runIn(context.Background(), ns, "", "sh", "-c", "nft delete table netdev benchlab 2>/dev/null || true")
		}
	}()
	for _, ns := range sinks {
		if err := runIn(ctx, ns, fmt.Sprintf(dropRuleset, dev, sink.rule), "nft", "-f", "-"); err != nil {
			res.Error = err.Error()
			return
		}
	}

	logf("  udp: %d-byte frames, %d flows, %v warmup + %v", o.frameLen, o.flows, o.warmup, o.duration)
	var sent atomic.Uint64
	type floodDone struct {
		st  floodStats
		err error
	}
	done := make(chan floodDone, 1)
	go func() {
		st, err := flood(ctx, floodConfig{
			NS: topo.Client, Iface: lab.ClientIface, CPU: o.loadCPU, Frames: frames,
			Batch: o.batch, Duration: o.warmup + o.duration + 300*time.Millisecond, Rate: o.rate,
		}, &sent)
		done <- floodDone{st, err}
	}()
	fail := func(err error) {
		res.Error = err.Error()
		<-done // the flood ends by its own deadline or ctx
	}
	if err := sleepCtx(ctx, o.warmup); err != nil {
		fail(err)
		return
	}
	before, err := snapshot(topo, sinks, dev, &sent, pid)
	if err != nil {
		fail(err)
		return
	}
	if err := sleepCtx(ctx, o.duration); err != nil {
		fail(err)
		return
	}
	after, err := snapshot(topo, sinks, dev, &sent, pid)
	if err != nil {
		fail(err)
		return
	}
	fd := <-done
	if fd.err != nil {
		res.Error = fd.err.Error()
		return
	}
	secs := after.at.Sub(before.at).Seconds()
	res.Seconds = secs
	res.GeneratorPPS = float64(after.generated-before.generated) / secs
	res.OfferedPPS = float64(after.clientTx-before.clientTx) / secs
	var delivered uint64
	for i := range after.serverRx {
		d := after.serverRx[i] - before.serverRx[i]
		res.PerServer = append(res.PerServer, d)
		delivered += d
	}
	res.DeliveredPPS = float64(delivered) / secs
	res.SendRefusals = fd.st.NoBufs
	cpuElapsed := after.cpuAt.Sub(before.cpuAt)
	res.BalancerCPUBusy = busyPercent(before.cpu, after.cpu, o.balancerCPU, cpuElapsed)
	res.LoadCPUBusy = busyPercent(before.cpu, after.cpu, o.loadCPU, cpuElapsed)
	if before.softnet != nil && after.softnet != nil {
		res.BacklogDropsBalancerCPU = after.softnet[o.balancerCPU].Dropped - before.softnet[o.balancerCPU].Dropped
		res.BacklogDropsLoadCPU = after.softnet[o.loadCPU].Dropped - before.softnet[o.loadCPU].Dropped
		res.RPSIPIsBalancerCPU = after.softnet[o.balancerCPU].ReceivedRPS - before.softnet[o.balancerCPU].ReceivedRPS
		res.RPSIPIsLoadCPU = after.softnet[o.loadCPU].ReceivedRPS - before.softnet[o.loadCPU].ReceivedRPS
	}
	res.BalancerKernelBusy = kernelPercent(before.cpu, after.cpu, o.balancerCPU, cpuElapsed)
	if res.BalancerKernelBusy >= 0 && after.utime >= before.utime {
		user := 100 * float64(after.utime-before.utime) / (cpuElapsed.Seconds() * userHZ)
		res.BalancerOwnUsPerPacket, _ = usPerPacket(res.BalancerKernelBusy+user, res.DeliveredPPS)
	}
	if pid != 0 && after.ctxsw >= before.ctxsw && before.ctxsw != 0 {
		res.GovsCtxSwitches = after.ctxsw - before.ctxsw
	}
	if !calibrate {
		res.BalancerUsPerPacket, _ = usPerPacket(res.BalancerCPUBusy, res.DeliveredPPS)
	}
	if res.LoadCPUBusy > 95 && res.BalancerCPUBusy >= 0 && res.BalancerCPUBusy < 90 {
		res.LimitedBy = "load-cpu"
	} else if res.BalancerCPUBusy > 95 {
		res.LimitedBy = "balancer-cpu"
	}
	perPacket := ""
	if !calibrate && res.BalancerUsPerPacket > 0 {
		perPacket = fmt.Sprintf(": %.2f us a delivered packet", res.BalancerUsPerPacket)
	}
	logf("  udp: generator %.0f pps, offered %.0f pps, delivered %.0f pps (cpu%d %.0f%% busy%s; cpu%d %.0f%%)",
		res.GeneratorPPS, res.OfferedPPS, res.DeliveredPPS, o.balancerCPU, res.BalancerCPUBusy, perPacket, o.loadCPU, res.LoadCPUBusy)
	if delivered == 0 && !calibrate {
		res.Error = "no flood frame came out of the balancer (" + res.CountedAt + ")"
		return
	}
	// Every frame counted in the window must be what the phase sends (a tunnel's packets, not the
	// flood passed on unchanged): the drop rule counted them over the whole flood.
	var matched uint64
	for _, ns := range sinks {
		n, err := sinkCounted(ctx, ns)
		if err != nil {
			res.Error = err.Error()
			return
		}
		matched += n
	}
	if matched < delivered {
		res.Error = fmt.Sprintf("only %d of the %d frames counted at the sink in the window were %s", matched, delivered, sink.what)
	}
}

// runWrk runs wrk in the client namespace on the load CPU and parses its report into res.
func runWrk(ctx context.Context, topo *lab.Topology, o options, res *httpResult) {
	secs := max(1, int(o.duration.Round(time.Second)/time.Second))
	url := fmt.Sprintf("http://%s:%d/", topo.VIP4, httpPort)
	logf("  http: wrk -t%d -c%d -d%ds --latency %s", res.Threads, res.Conns, secs, url)
	wctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	cmd := nsCommand(wctx, topo.Client, "taskset", "-c", strconv.Itoa(o.loadCPU), "wrk",
		"-t"+strconv.Itoa(res.Threads), "-c"+strconv.Itoa(res.Conns), "-d"+strconv.Itoa(secs)+"s", "--latency", url)
	start := time.Now()
	before, _ := readCPUTimes()
	out, err := cmd.CombinedOutput()
	elapsed := time.Since(start)
	after, _ := readCPUTimes()
	if err != nil {
		res.Error = fmt.Sprintf("wrk failed: %v: %s", err, strings.TrimSpace(string(out)))
		return
	}
	w, err := parseWrk(string(out))
	if err != nil {
		res.Error = err.Error()
		return
	}
	res.ReqPerSec, res.Requests = w.ReqPerSec, w.Requests
	res.P50Ms, res.P99Ms = durMs(w.P50), durMs(w.P99)
	res.SocketErrors, res.Non2xx = w.SocketErrors, w.Non2xx
	res.BalancerCPUBusy = busyPercent(before, after, o.balancerCPU, elapsed)
	res.LoadCPUBusy = busyPercent(before, after, o.loadCPU, elapsed)
	logf("  http: %.0f req/s, p50 %.3f ms, p99 %.3f ms, %d socket errors", res.ReqPerSec, res.P50Ms, res.P99Ms, res.SocketErrors)
	if w.Requests == 0 {
		res.Error = "wrk completed no request"
	}
}

func durMs(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
