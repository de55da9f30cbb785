// Command govs is the Go Virtual Server: a userspace L4 load balancer in the line of LVS/IPVS.
//
// Subcommands: run, check-config, stats, list, ctl, demo, bench, version. `govs <command> -h` shows each one's
// flags and examples.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/govs/govs/config"
	"github.com/govs/govs/control"
	"github.com/govs/govs/daemon"
)

var version = "dev" // set with -ldflags "-X main.version=..."

type command struct {
	name    string
	summary string
	run     func(args []string) int
}

var commands []command

func init() {
	commands = []command{
		{"run", "run the load balancer in the foreground", cmdRun},
		{"check-config", "validate a configuration file", cmdCheckConfig},
		{"stats", "print a running govs's counters", cmdStats},
		{"list", "list virtual and real servers (like ipvsadm -Ln), their traffic, rates and connections", cmdList},
		{"ctl", "change the running balancer: weight, drain, enable, disable, zero, reload", cmdCtl},
		{"demo", "build a demo topology in network namespaces and run govs in it", cmdDemo},
		{"bench", "generate, replay (offline) and transmit (live) captures to measure govs", cmdBench},
		{"version", "print the version", cmdVersion},
	}
}

func main() {
	daemon.Version = version
	os.Exit(dispatch(os.Args[1:]))
}

// dispatch runs the command args name and returns the exit code.
func dispatch(args []string) int {
	if len(args) < 1 {
		usage(os.Stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "--help", "help":
		usage(os.Stdout)
		return 0
	case "-version", "--version":
		return cmdVersion(nil)
	}
	for _, c := range commands {
		if c.name == name {
			return c.run(args[1:])
		}
	}
	fmt.Fprintf(os.Stderr, "govs: unknown command %q\n\n", name)
	usage(os.Stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "govs %s: the Go Virtual Server, an L4 load balancer\n\nUsage: govs <command> [flags]\n\nCommands:\n", version)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun `govs <command> -h` for a command's flags and examples.\n")
}

// newFlags makes a FlagSet whose -h output ends with examples.
func newFlags(name, synopsis, examples string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: govs %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
		fmt.Fprintf(w, "\nExamples:\n%s", examples)
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) (ok bool, code int) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return false, 0
		}
		return false, 2
	}
	return true, 0
}

func cmdRun(args []string) int {
	fs := newFlags("run", "run -config FILE", `  govs run -config /etc/govs/govs.toml
  govs run --config govs.toml      # SIGHUP reloads the file; SIGINT/SIGTERM stop govs (after shutdown_drain, or the HA handover; a second signal at once)
  govs run /etc/govs/govs.toml     # the file alone, as govs check-config takes it
`)
	path := fs.String("config", "", "configuration file (TOML); required")
	if ok, code := parse(fs, args); !ok {
		return code
	}
	switch rest := fs.Args(); {
	case len(rest) == 1 && *path == "":
		*path = rest[0]
	case len(rest) > 0:
		fmt.Fprintf(os.Stderr, "govs run: unexpected %q: give the configuration file once, as -config FILE or FILE\n", strings.Join(rest, " "))
		return 2
	}
	if *path == "" {
		fmt.Fprintln(os.Stderr, "govs run: -config FILE is required (try `govs run -h`)")
		return 2
	}
	// Signals are caught before anything else: a SIGHUP that arrives while govs starts (systemd's
	// ExecReload right after READY=1, an operator's reload) must reload once govs is up, not kill
	// it, which is what Go does with a SIGHUP nobody asked for. Reloads and stops have channels of
	// their own: a burst of SIGHUPs coalesces into one pending reload (the file is read when it
	// runs) and can never fill the buffer a SIGTERM needs, which signal.Notify would then drop.
	hups, stops := make(chan os.Signal, 1), make(chan os.Signal, 2)
	signal.Notify(hups, syscall.SIGHUP)
	signal.Notify(stops, syscall.SIGINT, syscall.SIGTERM)
	cfg, err := config.Load(*path, config.OnHost())
	if err != nil {
		// One problem is one line (file:line: field: what is wrong, or why the file cannot be
		// read); several are listed under a heading, one a line.
		if msg := err.Error(); strings.Contains(msg, "\n") {
			fmt.Fprintf(os.Stderr, "govs run: invalid configuration:\n%s\n", msg)
		} else {
			fmt.Fprintf(os.Stderr, "govs run: %s\n", msg)
		}
		return 1
	}
	if missing := missingCapabilities(cfg.Dataplane.IO == config.IOAFXDP); len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "govs run: this process lacks %s, which the data plane needs: run govs as root, or with them (contrib/govs.service lists what needs which)\n", strings.Join(missing, ", "))
		return 1
	}
	// log.go: [log] sets the format and level; the daemon's structured records go through
	// slog's default logger, its printf-style ones through logf.
	logger, level := newLogger(os.Stderr, cfg.Log)
	slog.SetDefault(logger)
	logf := printfTo(logger)
	for _, w := range cfg.Warnings() {
		logf("warning: %s", w)
	}
	sd, err := newNotifier() // notify.go: systemd's Type=notify
	if err != nil {
		logf("warning: %v", err)
	}
	d, err := daemon.New(cfg, logf)
	if err != nil {
		fmt.Fprintf(os.Stderr, "govs run: %v\n", err)
		return 1
	}
	reload := func() error { return reloadFile(levelReloader{d, level}, *path, logger) }
	d.SetReloadFunc(reload) // `govs ctl reload` does what SIGHUP does
	sd.tell(logf, fmt.Sprintf("READY=1\nSTATUS=forwarding: %d virtual servers", len(cfg.VirtualServers)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		d.Run(ctx)
		close(done)
	}()
	for running := true; running; {
		select {
		case <-hups:
			reload()
		case sig := <-stops:
			logf("%v: stopping", sig)
			sd.tell(logf, "STOPPING=1")
			running = false
		}
	}
	cancel()
	<-done
	// Hand over (HA) or drain (stand-alone, shutdown_drain) first; a second signal cuts that short.
	stopping, stopNow := context.WithCancel(context.Background())
	go func() {
		for {
			select {
			case sig := <-stops:
				logf("%v: stopping at once", sig)
				stopNow()
				return
			case <-stopping.Done():
				return
			}
		}
	}()
	d.Shutdown(stopping)
	stopNow()
	if err := d.Close(); err != nil {
		logf("warning: while stopping: %v", err)
	}
	logf("stopped")
	return 0
}

// reloader is what a SIGHUP reloads: the daemon.
type reloader interface {
	Reload(cfg *config.Config) error
	RecordReload(t time.Time, err error)
}

// reloadFile reloads d from the file at path and records the outcome for `govs stats`, also when
// the file fails to parse or validate and so never reaches d.Reload; `govs ctl reload` does the
// same. It returns why the reload was rejected, nil when it was applied.
func reloadFile(d reloader, path string, log *slog.Logger) error {
	return daemon.ReloadFile(d, path, log)
}

func cmdCheckConfig(args []string) int {
	fs := newFlags("check-config", "check-config FILE", `  govs check-config /etc/govs/govs.toml
  govs check-config -offline bench.toml   # do not look the interfaces up on this host
`)
	offline := fs.Bool("offline", false, "do not check that the configured interfaces and files ([ha] key_file) exist on this host")
	if ok, code := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "govs check-config: give exactly one FILE (try `govs check-config -h`)")
		return 2
	}
	opts := config.OnHost()
	opts.MissingInterfaceHint = "to check a file written for another host, run `govs check-config -offline " + fs.Arg(0) + "`"
	if *offline {
		opts.InterfaceExists, opts.AddressInterface, opts.InterfacePrefixes = nil, nil, nil
		opts.SkipFileChecks = true
	}
	cfg, err := config.Load(fs.Arg(0), opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(os.Stderr, "warning:", w)
	}
	for _, line := range cfg.Summary() {
		fmt.Println(line)
	}
	return 0
}

// controlFlags adds -control and -config, which locate a running govs's control socket. From
// -config it reads only the [control] socket, so the running govs stays reachable while the file
// on disk is broken (a reload of it is rejected and the running configuration stays).
func controlFlags(fs *flag.FlagSet) func() (string, error) {
	sock := fs.String("control", "", "control socket of the running govs (default: from -config, else "+config.DefaultControlSocket+")")
	cfgPath := fs.String("config", "", "configuration file of the running govs, to find its control socket (only [control] socket is read)")
	return func() (string, error) {
		if *sock != "" {
			return *sock, nil
		}
		if *cfgPath != "" {
			s, note, err := config.ReadControlSocket(*cfgPath)
			if err != nil {
				return "", err
			}
			if note != "" {
				fmt.Fprintf(os.Stderr, "govs %s: warning: %s\n", fs.Name(), note)
			}
			return s, nil
		}
		return config.DefaultControlSocket, nil
	}
}

func cmdStats(args []string) int {
	fs := newFlags("stats", "stats [-control SOCK | -config FILE] [-json]", `  govs stats
  govs stats -control /run/govs/govs.sock -json
`)
	sockPath := controlFlags(fs)
	asJSON := fs.Bool("json", false, "print the raw JSON status")
	if ok, code := parse(fs, args); !ok {
		return code
	}
	if *asJSON {
		sock, err := sockPath()
		if err != nil {
			fmt.Fprintln(os.Stderr, "govs stats:", err)
			return 1
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b, err := control.Query(ctx, sock, "stats")
		if err != nil {
			fmt.Fprintln(os.Stderr, "govs stats:", err)
			return 1
		}
		os.Stdout.Write(b)
		return 0
	}
	st, err := queryStatus(sockPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "govs stats:", err)
		return 1
	}
	printStats(os.Stdout, st)
	return 0
}

// queryStatus asks the govs found by sockPath for its status.
func queryStatus(sockPath func() (string, error)) (*control.Status, error) {
	sock, err := sockPath()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return control.QueryStatus(ctx, sock)
}

func printStats(w io.Writer, st *control.Status) {
	io := "" // a daemon before io = "afxdp" does not say
	if st.IO != "" {
		io = "  io=" + st.IO
		if st.XDPMode != "" {
			io += "(" + st.XDPMode
			if st.XDPIRQDefer != "" && st.XDPIRQDefer != "off" {
				io += fmt.Sprintf(", irq defer %s: %s", st.XDPIRQDefer, map[bool]string{false: "off", true: "on"}[st.XDPIRQDeferOn])
			}
			io += ")"
		}
	}
	fmt.Fprintf(w, "govs %s  ready=%v  workers=%d  interfaces=%s%s  generation=%d\n",
		st.Version, st.Ready, st.Workers, strings.Join(st.Interfaces, ","), io, st.Generation)
	printLastReload(w, st.LastReload, time.Now())
	for _, p := range st.InterfaceProblems {
		fmt.Fprintf(w, "interface problem: %s\n", p)
	}
	printHA(w, &st.HA, time.Now())
	printOverrides(w, st.Overrides, time.Now())
	tw := tabwriter.NewWriter(trimSpaces(w), 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "counter\tvalue")
	for _, k := range sortedKeys(st.Counters) {
		fmt.Fprintf(tw, "%s\t%d\n", k, st.Counters[k])
	}
	fmt.Fprintf(tw, "ring_packets\t%d\nring_drops\t%d\n", st.Rings.Packets, st.Rings.Drops)
	fmt.Fprintf(tw, "drops_total\t%d\n", st.DropsTotal)
	for _, k := range sortedKeys(st.Drops) {
		if st.Drops[k] != 0 {
			fmt.Fprintf(tw, "  drop %s\t%d\n", k, st.Drops[k])
		}
	}
	tw.Flush()
	printRealServers(w, st.VirtualServers)
}

// printHA says whether the node runs stand-alone or its HA role, peers and heartbeat counts.
func printHA(w io.Writer, h *control.HAStatus, now time.Time) {
	if h.State == "" || h.State == "standalone" {
		fmt.Fprintln(w, "ha: standalone")
		return
	}
	since := ""
	if h.Since != nil {
		since = fmt.Sprintf(" since %s (%s ago)", h.Since.Format(time.RFC3339), now.Sub(*h.Since).Round(time.Millisecond))
	}
	fmt.Fprintf(w, "ha: %s%s  forwarding=%v  listen=%s  priority=%d (advertised %d)\n", h.State, since, h.Forwarding, h.Listen, h.Priority, h.AdvertisedPriority)
	if h.Fault != "" {
		fmt.Fprintf(w, "  fault: %s\n", h.Fault)
	}
	for _, p := range h.Peers {
		heard, state := "never heard", p.State
		if p.LastHeardMS >= 0 {
			heard = "heard " + agoMS(p.LastHeardMS) + " ago"
			if !p.Alive {
				state = "was " + state // its last heartbeat's word; it is silent now
			}
		}
		fmt.Fprintf(w, "  peer %s: %s priority=%d alive=%v, %s\n", p.Address, state, p.Priority, p.Alive, heard)
	}
	fmt.Fprintf(w, "  heartbeats: sent=%d received=%d send_errors=%d dropped=%d", h.HeartbeatsSent, h.HeartbeatsReceived, h.HeartbeatSendErrors, h.HeartbeatDropsTotal)
	for _, k := range sortedKeys(h.HeartbeatsDropped) {
		if h.HeartbeatsDropped[k] != 0 {
			fmt.Fprintf(w, " %s=%d", k, h.HeartbeatsDropped[k])
		}
	}
	fmt.Fprintf(w, "  transitions=%d\n", h.Transitions)
	if y := h.Sync; y != nil {
		last := "no batch received yet"
		if y.LagMS >= 0 {
			last = "last batch " + agoMS(y.LagMS) + " ago"
		}
		fmt.Fprintf(w, "  sync: converged=%v sent=%d entries, received=%d entries, installed=%d refused=%d, dropped export=%d inbox=%d queue=%d, gaps=%d, snapshots sent=%d received=%d, %s\n",
			y.Converged, y.SentEntries, y.ReceivedEntries, y.Installed, y.Refused, y.ExportDropped, y.InboxDropped, y.QueueDrops,
			y.Gaps, y.SnapshotsSent, y.SnapshotsReceived, last)
		printSnapshot(w, &y.Snapshot, now)
	}
}

// agoMS writes ms milliseconds as a duration: "12ms" below a second, "10m21.1s" above.
func agoMS(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	if d >= time.Second {
		d = d.Round(100 * time.Millisecond)
	}
	return d.String()
}

// printSnapshot is the line on the snapshot a node sends or receives, or else its last one.
func printSnapshot(w io.Writer, p *control.HASnapshot, now time.Time) {
	if p.Since == nil {
		fmt.Fprintln(w, "  snapshot: none yet")
		return
	}
	since := fmt.Sprintf("since %s (%s ago)", p.Since.Format(time.RFC3339), now.Sub(*p.Since).Round(time.Millisecond))
	switch {
	case p.Sending:
		fmt.Fprintf(w, "  snapshot: sending, %s: %d of %d entries\n", since, p.Entries, p.Total)
	case p.Receiving:
		fmt.Fprintf(w, "  snapshot: receiving, %s: %d entries\n", since, p.Entries)
	case p.Total > 0:
		fmt.Fprintf(w, "  snapshot: last one began %s: %d entries sent of %d\n", strings.TrimPrefix(since, "since "), p.Entries, p.Total)
	default:
		fmt.Fprintf(w, "  snapshot: last one began %s: %d entries\n", strings.TrimPrefix(since, "since "), p.Entries)
	}
}

// printLastReload says whether the last reload was applied or rejected (and why), and when.
func printLastReload(w io.Writer, r *control.Reload, now time.Time) {
	if r == nil {
		fmt.Fprintln(w, "last reload: none since govs started")
		return
	}
	when := fmt.Sprintf("%s (%s ago)", r.Time.Format(time.RFC3339), now.Sub(r.Time).Round(time.Second))
	if r.Applied {
		fmt.Fprintf(w, "last reload: applied at %s\n", when)
		if n := len(r.OverridesDropped); n > 0 {
			fmt.Fprintf(w, "  it ended %d runtime override(s) made with govs ctl\n", n)
		}
		for _, p := range r.PendingRestart {
			fmt.Fprintf(w, "  %s\n", p)
		}
		return
	}
	fmt.Fprintf(w, "last reload: rejected at %s; the running configuration stays:\n", when)
	for _, l := range strings.Split(strings.TrimRight(r.Error, "\n"), "\n") {
		fmt.Fprintf(w, "  %s\n", l)
	}
}

// printRealServers prints each real server's figures under its virtual server. A virtual
// server's line (protocol, address, scheduler, method, persistence) is as long as it needs and
// takes no part in the columns, as in ipvsadm's listing: the columns are as wide as the header
// and the real servers' figures.
func printRealServers(w io.Writer, vss []control.VirtualServer) {
	if len(vss) == 0 {
		return
	}
	fmt.Fprintln(w)
	rows := [][]string{{"virtual server / real server", "weight", "active", "inactive", "packets", "resolved", "overloaded", "health", "last check error"}}
	heads := map[int]string{} // row index → the virtual server line that comes before it
	for _, vs := range vss {
		heads[len(rows)] += fmt.Sprintf("%s  %s %s %s%s\n", strings.ToUpper(vs.Protocol), vs.Address, vs.Scheduler, forwardName(vs.Method), tunnelNote(vs)+persistNote(vs)+quorumNote(vs))
		for _, rs := range vs.RealServers {
			rows = append(rows, []string{"  -> " + rs.Address, strconv.Itoa(rs.Weight), strconv.FormatInt(rs.ActiveConnections, 10),
				strconv.FormatInt(rs.InactiveConnections, 10), strconv.FormatUint(rs.Packets, 10), strconv.FormatBool(rs.Resolved),
				strconv.FormatBool(rs.Overloaded), healthLabel(rs), rs.HealthError})
		}
	}
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	tw := trimSpaces(w)
	for i := 0; i <= len(rows); i++ {
		io.WriteString(tw, heads[i])
		if i == len(rows) {
			break
		}
		var b strings.Builder
		for j, c := range rows[i] {
			fmt.Fprintf(&b, "%-*s  ", widths[j], c)
		}
		fmt.Fprintln(tw, b.String())
	}
}

func cmdList(args []string) int {
	fs := newFlags("list", "list [-control SOCK | -config FILE] [-n] [-stats | -rate | -conns|-c [-service S] [-real R] [-client C] [-max N]] [-json]", `  govs list
  govs list -config /etc/govs/govs.toml
  govs list -json     # {"version": ..., "virtual_servers": [{"address": ..., "real_servers": [...]}]}
  govs list -stats    # connections, packets and bytes in/out per service and real server (ipvsadm -Ln --stats)
  govs list -rate     # the same per second (ipvsadm -Ln --rate)
  govs list -conns -service tcp/198.18.0.100:80 -real 198.19.0.11:80   # connections (ipvsadm -Lnc)
  govs list -conns -client 198.18.0.10 -json
  govs list -n -c     # ipvsadm habits: -n is accepted (always numeric), -c is -conns
`)
	sockPath := controlFlags(fs)
	asJSON := fs.Bool("json", false, "print as JSON (with the field names of govs stats -json; with -conns: {\"matched\": N, \"conns\": [...]})")
	withStats := fs.Bool("stats", false, "show connections, packets and bytes in/out (since govs started or govs ctl zero)")
	withRate := fs.Bool("rate", false, "show connections, packets and bytes per second (over the last second)")
	conns := fs.Bool("conns", false, "list the connections: protocol, expiry, state, client, VIP, real server")
	fs.BoolVar(conns, "c", false, "the same as -conns (ipvsadm -Lnc)")
	fs.Bool("n", false, "accepted for ipvsadm's -n and ignored: govs always prints addresses and ports as numbers")
	service := fs.String("service", "", "with -conns: only this virtual server's, e.g. tcp/198.18.0.100:80")
	real := fs.String("real", "", "with -conns: only those to this real server, e.g. 198.19.0.11:80 (or the address alone)")
	client := fs.String("client", "", "with -conns: only this client's, e.g. 198.18.0.10 or 198.18.0.10:41000")
	maxConns := fs.Int("max", control.DefaultConnsMax, "with -conns: list at most this many (up to 100000); the rest are counted")
	if ok, code := parse(fs, args); !ok {
		return code
	}
	if n := countTrue(*withStats, *withRate, *conns); n > 1 {
		fmt.Fprintln(os.Stderr, "govs list: choose one of -stats, -rate and -conns")
		return 2
	}
	if !*conns && (*service != "" || *real != "" || *client != "") {
		fmt.Fprintln(os.Stderr, "govs list: -service, -real and -client filter the connections; add -conns")
		return 2
	}
	if *conns {
		sock, err := sockPath()
		if err != nil {
			fmt.Fprintln(os.Stderr, "govs list:", err)
			return 1
		}
		return listConns(sock, control.ConnsArgs{Service: *service, Real: *real, Client: *client, Max: *maxConns}, *asJSON)
	}
	st, err := queryStatus(sockPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "govs list:", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st.List()); err != nil {
			fmt.Fprintln(os.Stderr, "govs list:", err)
			return 1
		}
		return 0
	}
	switch {
	case *withStats:
		printListStats(os.Stdout, st)
	case *withRate:
		printListRate(os.Stdout, st)
	default:
		printList(os.Stdout, st)
	}
	return 0
}

func countTrue(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// printList prints virtual servers the way `ipvsadm -Ln` does, so operators read it at a glance.
func printList(w io.Writer, st *control.Status) {
	fmt.Fprintf(w, "IP Virtual Server govs %s\n", st.Version)
	var table bytes.Buffer
	tw := tabwriter.NewWriter(trimSpaces(&table), 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "Prot LocalAddress:Port\tScheduler\t\t\t\t\t")
	fmt.Fprintln(tw, "  -> RemoteAddress:Port\tForward\tWeight\tActiveConn\tInActConn\tPackets\tResolved\tHealth")
	var notes, locals []string
	for _, vs := range st.VirtualServers {
		fmt.Fprintf(tw, "%s  %s\t%s\t\t\t\t\t\t\n", strings.ToUpper(vs.Protocol), vs.Address, vs.Scheduler)
		notes = append(notes, tunnelNote(vs)+persistNote(vs)+quorumNote(vs))
		locals = append(locals, localsNote(vs))
		fwd := forwardName(vs.Method)
		for _, rs := range vs.RealServers {
			fmt.Fprintf(tw, "  -> %s\t%s\t%d\t%d\t%d\t%d\t%v\t%s%s\n", rs.Address, fwd, rs.Weight,
				rs.ActiveConnections, rs.InactiveConnections, rs.Packets, rs.Resolved, healthLabel(rs), realNote(rs, st.Overrides, vs))
		}
	}
	tw.Flush()
	// A virtual server's notes (persistence, quorum) follow its scheduler outside the table, as
	// ipvsadm prints them, so that they do not widen the real servers' Forward column. A fullnat
	// one's local addresses are a line of their own under it, outside the table too, and without
	// the "  -> " of a real server, so that readers of the real-server lines see no new ones.
	lines := strings.SplitAfter(table.String(), "\n")
	for i, line := range lines {
		if i >= 2 && line != "" && !strings.HasPrefix(line, "  -> ") && len(notes) > 0 {
			line = strings.TrimSuffix(line, "\n") + notes[0] + "\n" + locals[0]
			notes, locals = notes[1:], locals[1:]
		}
		io.WriteString(w, line)
	}
}

// localsNote is the line list prints under a fullnat virtual server: its local addresses, the
// sources real servers see (DPVS's ipvsadm -G shows them as its SNAT_IP); "" for other methods.
func localsNote(vs control.VirtualServer) string {
	if len(vs.LocalAddresses) == 0 {
		return ""
	}
	return "  local addresses: " + strings.Join(vs.LocalAddresses, " ") + "\n"
}

// forwardName is how list and stats name a forwarding method, as ipvsadm's Forward column does:
// Masq, Route, Tunnel, FullNat (DPVS's name). The config file, the JSON and the connection log
// keep the config's spelling (nat, dr, tun, fullnat).
func forwardName(method string) string {
	if f, ok := map[string]string{"nat": "Masq", "dr": "Route", "tun": "Tunnel", "fullnat": "FullNat"}[method]; ok {
		return f
	}
	return method
}

// healthLabel is a real server's health as list and stats print it: what its check says ("up",
// "down", "unknown", "unchecked"), or "sorry" for the sorry server, with ",standby" while it takes
// no new connections but keeps its own (see control.RealServer).
func healthLabel(rs control.RealServer) string {
	s := rs.Health
	if rs.Sorry {
		s = "sorry"
	}
	if rs.Standby {
		s += ",standby"
	}
	return s
}

// persistNote is what list and stats print after a persistent virtual server's scheduler, as
// ipvsadm -Ln does: "persistent SECONDS", and "mask M" when clients are grouped by a prefix
// (IPv4 as a dotted netmask, IPv6 as a length).
// tunnelNote is method tun's encapsulation after the scheduler: " tunnel gue:6080", " tunnel ipip".
func tunnelNote(vs control.VirtualServer) string {
	switch {
	case vs.Tunnel == "":
		return ""
	case vs.TunnelPort != 0:
		return fmt.Sprintf(" tunnel %s:%d", vs.Tunnel, vs.TunnelPort)
	}
	return " tunnel " + vs.Tunnel
}

func persistNote(vs control.VirtualServer) string {
	if vs.PersistenceTimeout == 0 {
		return ""
	}
	s := fmt.Sprintf(" persistent %d", vs.PersistenceTimeout)
	v6 := strings.HasPrefix(vs.Address, "[")
	switch {
	case !v6 && vs.PersistenceNetmask < 32:
		s += " mask " + net.IP(net.CIDRMask(vs.PersistenceNetmask, 32)).String()
	case v6 && vs.PersistenceNetmask < 128:
		s += fmt.Sprintf(" mask %d", vs.PersistenceNetmask)
	}
	return s
}

// quorumNote is what list and stats print after a virtual server with a quorum.
func quorumNote(vs control.VirtualServer) string {
	switch {
	case vs.Quorum == 0:
		return ""
	case vs.BelowQuorum:
		return fmt.Sprintf(" quorum=%d (below)", vs.Quorum)
	}
	return fmt.Sprintf(" quorum=%d", vs.Quorum)
}

func cmdVersion(args []string) int {
	fs := newFlags("version", "version", "  govs version\n")
	if ok, code := parse(fs, args); !ok {
		return code
	}
	fmt.Printf("govs %s\n", version)
	return 0
}

// trimSpaces returns a writer that passes whole lines to w without their trailing spaces: the
// padding tabwriter gives a table's empty trailing cells, which keep its columns aligned.
func trimSpaces(w io.Writer) io.Writer { return &trimWriter{w: w} }

type trimWriter struct {
	w    io.Writer
	line []byte // the current line, until its newline
}

func (t *trimWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			t.line = append(t.line, p...)
			break
		}
		t.line = append(bytes.TrimRight(append(t.line, p[:i]...), " "), '\n')
		_, err := t.w.Write(t.line)
		t.line = t.line[:0]
		if err != nil {
			return n - len(p), err
		}
		p = p[i+1:]
	}
	return n, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
