package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/govs/govs/sched"
)

// ImplementedSchedulers are the scheduler names a virtual server may use: the
// whole IPVS family (ipvsadm(8), --scheduler), as sched implements it, sorted.
// Callers must not modify it.
var ImplementedSchedulers = sched.Names()

// Limits on [dataplane].
const (
	maxWorkers   = 1024
	maxWeight    = 65535
	maxIfNameLen = 15 // IFNAMSIZ-1, see netdevice(7)
)

// The raw* types mirror the file. Leaves are `any` so that a wrong type is
// reported by us, with the right line and field, rather than by the toml
// decoder; tables are structs so that MetaData.Undecoded finds unknown keys.
type rawFile struct {
	ShutdownDrain any                `toml:"shutdown_drain"`
	Dataplane     *rawDataplane      `toml:"dataplane"`
	Control       *rawControl        `toml:"control"`
	Timeouts      *rawTimeouts       `toml:"timeouts"`
	Conntrack     *rawConntrack      `toml:"conntrack"`
	VirtualServer []rawVirtualServer `toml:"virtual_server"`
	HA            *rawHA             `toml:"ha"`
	Metrics       *rawMetrics        `toml:"metrics"` // observe.go
	Log           *rawLog            `toml:"log"`     // observe.go
}

type rawDataplane struct {
	Interfaces  any `toml:"interfaces"`
	Workers     any `toml:"workers"`
	RXMode      any `toml:"rx_mode"`
	Priority    any `toml:"worker_priority"`
	IO          any `toml:"io"`
	XDPMode     any `toml:"xdp_mode"`
	XDPIRQDefer any `toml:"xdp_irq_defer"`
}

type rawControl struct {
	Socket any `toml:"socket"`
}

type rawTimeouts struct {
	TCP          any `toml:"tcp"`
	TCPFin       any `toml:"tcp_fin"`
	UDP          any `toml:"udp"`
	TCPSynRecv   any `toml:"tcp_syn_recv"`
	TCPSynSent   any `toml:"tcp_syn_sent"`
	TCPTimeWait  any `toml:"tcp_time_wait"`
	TCPClose     any `toml:"tcp_close"`
	TCPCloseWait any `toml:"tcp_close_wait"`
	TCPLastAck   any `toml:"tcp_last_ack"`
}

type rawConntrack struct {
	MaxEntries       any `toml:"max_entries"`
	FullPolicy       any `toml:"full_policy"`
	ExpireNodestConn any `toml:"expire_nodest_conn"`
}

type rawVirtualServer struct {
	Address            any             `toml:"address"`
	Protocol           any             `toml:"protocol"`
	Scheduler          any             `toml:"scheduler"`
	SchedulerFlags     any             `toml:"scheduler_flags"`
	MHTableSize        any             `toml:"mh_table_size"`
	Method             any             `toml:"method"`
	Tunnel             any             `toml:"tunnel"`
	TunnelPort         any             `toml:"tunnel_port"`
	LocalAddresses     any             `toml:"local_addresses"`
	PersistenceTimeout any             `toml:"persistence_timeout"`
	PersistenceNetmask any             `toml:"persistence_netmask"`
	OnePacket          any             `toml:"one_packet"`
	RealServer         []rawRealServer `toml:"real_server"`
	HealthCheck        *rawHealthCheck `toml:"health_check"` // health.go
	SorryServer        any             `toml:"sorry_server"`
	Quorum             any             `toml:"quorum"`
}

type rawRealServer struct {
	Address        any `toml:"address"`
	Weight         any `toml:"weight"`
	UpperThreshold any `toml:"upper_threshold"`
	LowerThreshold any `toml:"lower_threshold"`

	HealthCheck *rawHealthCheck `toml:"health_check"` // health.go
}

// schema lists the valid keys of each table, by path without indexes, in the
// order the documentation gives them. It must match the raw* types.
var schema = map[string][]string{
	"":          {"shutdown_drain", "dataplane", "control", "timeouts", "conntrack", "virtual_server", "ha", "metrics", "log"},
	"ha":        haKeys,
	"dataplane": {"interfaces", "workers", "rx_mode", "worker_priority", "io", "xdp_mode", "xdp_irq_defer"},
	"control":   {"socket"},
	"timeouts": {"tcp", "tcp_fin", "udp", "tcp_syn_recv", "tcp_syn_sent", "tcp_time_wait",
		"tcp_close", "tcp_close_wait", "tcp_last_ack"},
	"conntrack": {"max_entries", "full_policy", "expire_nodest_conn"},
	"virtual_server": {"address", "protocol", "scheduler", "scheduler_flags", "mh_table_size", "method",
		"tunnel", "tunnel_port", "local_addresses", "persistence_timeout", "persistence_netmask", "one_packet", "real_server",
		"health_check", "sorry_server", "quorum"},
	"virtual_server.real_server": {"address", "weight", "upper_threshold", "lower_threshold", "health_check"},
	// health.go
	"virtual_server.health_check":             healthCheckKeys,
	"virtual_server.real_server.health_check": healthCheckKeys,
	// observe.go
	"metrics": {"listen"},
	"log":     {"format", "level", "connections", "connections_rate"},
}

// parser holds the state of one Parse call.
type parser struct {
	file string
	src  []byte
	opts LoadOptions
	pos  *positions
	errs Errors
}

func (p *parser) errf(field, format string, args ...any) {
	line := 0
	if p.pos != nil {
		line = p.pos.lineOf(field)
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (es Errors) sort() {
	sort.SliceStable(es, func(i, j int) bool { return es[i].Line < es[j].Line })
}

func (p *parser) parse() *Config {
	// First pass: syntax, and the shape of the tables, on a generic map.
	var generic map[string]any
	if _, err := toml.Decode(string(p.src), &generic); err != nil {
		p.tomlError(err)
		return nil
	}
	p.pos = indexPositions(p.src)
	if !p.checkShape(generic) {
		return nil
	}

	// Second pass: into the raw structs, which marks the keys we know.
	var raw rawFile
	md, err := toml.Decode(string(p.src), &raw)
	if err != nil {
		p.tomlError(err) // not expected after checkShape; report rather than guess
		return nil
	}
	p.unknownKeys(&md)

	c := &Config{File: p.file, pos: p.pos}
	p.dataplane(raw.Dataplane, &c.Dataplane)
	p.control(raw.Control, &c.Control)
	p.timeouts(raw.Timeouts, &c.Timeouts)
	p.conntrack(raw.Conntrack, &c.Conntrack)
	p.virtualServers(raw.VirtualServer, c)
	p.ha(raw.HA, c)
	p.shutdownDrain(raw.ShutdownDrain, c)
	p.metrics(raw.Metrics, &c.Metrics)
	p.logConfig(raw.Log, &c.Log)
	return c
}

// tomlError reports a toml syntax or decoding error with the parser's own
// line and column.
func (p *parser) tomlError(err error) {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		line, col := pe.Position.Line, pe.Position.Col
		// v1.6.0 counts a newline the lexer has already passed into Line, and
		// its column is off when Start is the first byte of a line; the byte
		// offset itself is right, so derive both from it.
		if start := pe.Position.Start; start > 0 && start <= len(p.src) {
			before := p.src[:start]
			line = 1 + bytes.Count(before, []byte{'\n'})
			col = start - bytes.LastIndexByte(before, '\n')
		}
		e := &Error{
			File:  p.file,
			Line:  line,
			Field: pe.LastKey,
			Msg:   fmt.Sprintf("invalid TOML at column %d: %s", col, pe.Message),
		}
		// In a table header the parser's last key is the previous table's, which would send the
		// operator to the wrong table: name the header as written instead.
		if text := strings.TrimSpace(sourceLine(p.src, line)); strings.HasPrefix(text, "[") {
			e.Field = ""
			e.Msg = fmt.Sprintf("invalid TOML at column %d in the table header %s: %s", col, text, pe.Message)
		}
		p.errs = append(p.errs, e)
		return
	}
	p.errs = append(p.errs, &Error{File: p.file, Msg: "invalid TOML: " + err.Error()})
}

// sourceLine is line n (from 1) of src without its newline, "" past the end.
func sourceLine(src []byte, n int) string {
	lines := strings.Split(string(src), "\n")
	if n < 1 || n > len(lines) {
		return ""
	}
	return lines[n-1]
}

// checkShape reports tables written as values and arrays of tables written as
// single tables, which the struct decode would only reject with a Go type name.
func (p *parser) checkShape(m map[string]any) bool {
	ok := true
	for _, name := range []string{"dataplane", "control", "timeouts", "conntrack", "ha", "metrics", "log"} {
		if v, present := m[name]; present {
			if _, isTable := v.(map[string]any); !isTable {
				p.errf(name, "is %s but must be a table; write [%s] on a line of its own, followed by its keys", typeName(v), name)
				ok = false
			}
		}
	}
	v, present := m["virtual_server"]
	if !present {
		return ok
	}
	vss, isArray := tables(v)
	if !isArray {
		p.errf("virtual_server", "is %s but must be an array of tables; write [[virtual_server]] (double brackets) before each virtual server", typeName(v))
		return false
	}
	for i, vs := range vss {
		ok = p.healthShape(fmt.Sprintf("virtual_server[%d]", i+1), vs) && ok
		if v, present := vs["real_server"]; present {
			rss, isArray := tables(v)
			if !isArray {
				p.errf(fmt.Sprintf("virtual_server[%d].real_server", i+1),
					"is %s but must be an array of tables; write [[virtual_server.real_server]] (double brackets) before each real server", typeName(v))
				ok = false
			}
			for j, rs := range rss {
				ok = p.healthShape(fmt.Sprintf("virtual_server[%d].real_server[%d]", i+1, j+1), rs) && ok
			}
		}
	}
	return ok
}

// tables returns v as a list of tables if it is an array of tables, written
// with [[...]] headers or as an array of inline tables.
func tables(v any) ([]map[string]any, bool) {
	switch v := v.(type) {
	case []map[string]any:
		return v, true
	case []any:
		out := make([]map[string]any, 0, len(v))
		for _, e := range v {
			t, ok := e.(map[string]any)
			if !ok {
				return nil, false
			}
			out = append(out, t)
		}
		return out, true
	}
	return nil, false
}

// typeName names the TOML type of a decoded value, with an article.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date-time"
	case nil:
		return "empty"
	}
	return "a date or time"
}

// unknownKeys reports every key the raw structs did not take, and every key
// the decoder matched only case-insensitively (it falls back to EqualFold).
func (p *parser) unknownKeys(md *toml.MetaData) {
	bad := make(map[string][]string) // bare path of the first unknown segment → it
	var order []string
	note := func(k toml.Key) {
		ctx := ""
		for n, name := range k {
			valid, isTable := schema[ctx]
			if !isTable {
				return // below a leaf such as workers: its type error says enough
			}
			if !slices.Contains(valid, name) {
				prefix := k[:n+1]
				s := prefix.String()
				if _, seen := bad[s]; !seen {
					bad[s] = prefix
					order = append(order, s)
				}
				return
			}
			if ctx == "" {
				ctx = name
			} else {
				ctx += "." + name
			}
		}
	}
	for _, k := range md.Undecoded() {
		note(k)
	}
	for _, k := range md.Keys() {
		note(k) // exact-case check of the keys the decoder did take
	}

	reported := make(map[string]bool)
	for _, s := range order {
		prefix := bad[s]
		found := false
		for _, kp := range p.pos.keys {
			if !kp.isKey || len(kp.segs) < len(prefix) || !sameNames(kp.segs[:len(prefix)], prefix) {
				continue
			}
			found = true
			field := pathString(kp.segs[:len(prefix)])
			if reported[field] {
				continue
			}
			reported[field] = true
			p.errs = append(p.errs, &Error{File: p.file, Line: kp.line, Field: field, Msg: unknownKeyMsg(prefix)})
		}
		if !found {
			p.errs = append(p.errs, &Error{File: p.file, Field: s, Msg: unknownKeyMsg(prefix)})
		}
	}
}

func sameNames(segs []seg, names []string) bool {
	for i := range segs {
		if segs[i].name != names[i] {
			return false
		}
	}
	return true
}

// declined are keys operators may know from the issue tracker or from other balancers that govs
// does not take, with what to do instead: "unknown key" alone would suggest a typo.
var declined = map[string]string{
	"virtual_server.clamp_mss": "not supported: under tun (and dr) the client's MSS comes from the real server's SYN-ACK, " +
		"which never passes govs; lower it on the real servers instead (ip route ... advmss, or a lower MTU on their tunnel device)",
}

func unknownKeyMsg(k toml.Key) string {
	table := strings.Join(k[:len(k)-1], ".")
	valid := schema[table]
	name := k[len(k)-1]
	if msg, ok := declined[table+"."+name]; ok {
		return msg
	}
	where := "at the top level"
	switch table {
	case "":
	case "virtual_server", "virtual_server.real_server":
		where = "in [[" + table + "]]"
	default:
		where = "in [" + table + "]"
	}
	msg := fmt.Sprintf("unknown key; valid keys %s are %s", where, strings.Join(valid, ", "))
	if s := suggest(name, valid); s != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", s)
	} else if other := tablesWithKey(name, table); other != "" {
		msg += fmt.Sprintf(" (%s is a key of %s)", name, other)
	}
	return msg
}

// tablesWithKey names the tables other than table that take key name, as the file writes them
// ("[[virtual_server.real_server]]", "[dataplane]"), or "": a key in the wrong table is a
// common slip.
func tablesWithKey(name, table string) string {
	var out []string
	for t, keys := range schema {
		if t == table || t == "" || !slices.Contains(keys, name) {
			continue
		}
		switch {
		case t == "virtual_server" || t == "virtual_server.real_server":
			out = append(out, "[["+t+"]]")
		default:
			out = append(out, "["+t+"]")
		}
	}
	sort.Strings(out)
	return strings.Join(out, " and ")
}

// suggest returns the valid name closest to name, if it is close enough to be
// a typo.
func suggest(name string, valid []string) string {
	best, bestDist := "", 3
	for _, v := range valid {
		if strings.EqualFold(v, name) {
			return v
		}
		if d := editDistance(strings.ToLower(name), v); d < bestDist {
			best, bestDist = v, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance; inputs are short key names.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func (p *parser) dataplane(raw *rawDataplane, out *Dataplane) {
	const field = "dataplane.interfaces"
	if raw == nil {
		raw = &rawDataplane{}
	}
	switch v := raw.Interfaces.(type) {
	case nil:
		p.errf(field, `is required; list the interfaces govs reads and writes, e.g. [dataplane] interfaces = ["eth0"]`)
	case []any:
		if len(v) == 0 {
			p.errf(field, `is empty; list at least one interface, e.g. interfaces = ["eth0"]`)
		}
		first := make(map[string]int, len(v))
		for i, e := range v {
			elem := fmt.Sprintf("%s[%d]", field, i+1)
			name, ok := e.(string)
			if !ok {
				p.errf(elem, `is %s; interface names are strings, e.g. interfaces = ["eth0", "eth1"]`, typeName(e))
				continue
			}
			if j, dup := first[name]; dup {
				p.errf(elem, "interface %q is already listed as %s[%d]; remove the duplicate", name, field, j)
				continue
			}
			first[name] = i + 1
			if msg := ifNameProblem(name); msg != "" {
				p.errf(elem, "%s", msg)
				continue
			}
			if p.opts.InterfaceExists != nil && !p.opts.InterfaceExists(name) {
				msg := fmt.Sprintf(`interface %q does not exist on this host; check the name with "ip link"`, name)
				if p.opts.MissingInterfaceHint != "" {
					msg += "; " + p.opts.MissingInterfaceHint
				}
				p.errf(elem, "%s", msg)
				continue
			}
			out.Interfaces = append(out.Interfaces, name)
		}
		if len(v) > MaxInterfaces {
			p.errf(field, "lists %d interfaces; govs serves at most %d: use fewer (a VLAN trunk carries many networks on one)", len(v), MaxInterfaces)
		}
	default:
		p.errf(field, `is %s; write a list of interface names, e.g. interfaces = ["eth0", "eth1"]`, typeName(v))
	}

	switch v := raw.Workers.(type) {
	case nil:
		out.Workers = 0
	case int64:
		if v < 0 || v > maxWorkers {
			p.errf("dataplane.workers", "%d is out of range; write a number of workers from 0 to %d (0 = one per CPU)", v, maxWorkers)
		} else {
			out.Workers = int(v)
		}
	default:
		p.errf("dataplane.workers", "is %s; write an integer from 0 to %d (0 = one per CPU)", typeName(v), maxWorkers)
	}

	switch v := raw.RXMode.(type) {
	case nil:
		out.RXMode = DefaultRXMode
	case string:
		switch v {
		case RXModeAuto, RXModeThroughput, RXModeLatency:
			out.RXMode = v
		default:
			p.errf("dataplane.rx_mode", "%q is not a receive mode; write \"auto\" (default), \"throughput\" or \"latency\"", v)
		}
	default:
		p.errf("dataplane.rx_mode", "is %s; write \"auto\", \"throughput\" or \"latency\"", typeName(v))
	}

	switch v := raw.IO.(type) {
	case nil:
		out.IO = DefaultIO
	case string:
		switch v {
		case IOAFPacket, IOAFXDP:
			out.IO = v
		default:
			p.errf("dataplane.io", "%q is not a packet I/O; write \"afpacket\" (default) or \"afxdp\"", v)
		}
	default:
		p.errf("dataplane.io", "is %s; write \"afpacket\" (default) or \"afxdp\"", typeName(v))
	}
	switch v := raw.XDPMode.(type) {
	case nil:
		out.XDPMode = DefaultXDPMode
	case string:
		switch {
		case v != XDPModeDriver && v != XDPModeGeneric:
			p.errf("dataplane.xdp_mode", "%q is not an XDP mode; write \"driver\" (default, native XDP) or \"generic\" (any driver, slower)", v)
		case raw.IO != nil && out.IO == "":
			// io itself is wrong and says so
		case out.IO != IOAFXDP:
			p.errf("dataplane.xdp_mode", "applies to io = \"afxdp\" only; remove it, or set io = \"afxdp\"")
		default:
			out.XDPMode = v
		}
	default:
		p.errf("dataplane.xdp_mode", "is %s; write \"driver\" or \"generic\"", typeName(v))
	}
	out.XDPIRQDefer = XDPIRQDeferOff
	switch v := raw.XDPIRQDefer.(type) {
	case nil:
	case string:
		d, err := time.ParseDuration(v)
		switch {
		case v == XDPIRQDeferOff:
		case raw.IO != nil && out.IO == "":
			// io itself is wrong, and says so
		case out.IO != IOAFXDP:
			p.errf("dataplane.xdp_irq_defer", "applies to io = \"afxdp\" only; remove it, or set io = \"afxdp\"")
		case v == XDPIRQDeferAuto:
			out.XDPIRQDefer = v
		case err != nil || d < MinXDPIRQDefer || d > MaxXDPIRQDefer:
			p.errf("dataplane.xdp_irq_defer", "%q: write \"off\" (default), \"auto\" (deferred while frames arrive fast) or a duration from %v to %v, e.g. \"50us\"", v, MinXDPIRQDefer, MaxXDPIRQDefer)
		default:
			out.XDPIRQDefer = strings.Replace(d.String(), "µs", "us", 1) // as an operator types it
		}
	default:
		p.errf("dataplane.xdp_irq_defer", "is %s; write \"off\", \"auto\" or a duration such as \"50us\"", typeName(v))
	}
	if out.IO == IOAFXDP {
		if p.opts.InterfaceMTU != nil {
			for i, name := range out.Interfaces {
				if mtu := p.opts.InterfaceMTU(name); mtu > MaxXDPMTU {
					p.errf(fmt.Sprintf("dataplane.interfaces[%d]", i+1), "interface %s has MTU %d; with io = \"afxdp\" govs takes frames up to an MTU of %d: lower the MTU, or set io = \"afpacket\"", name, mtu, MaxXDPMTU)
				}
			}
		}
		if raw.RXMode != nil {
			p.errf("dataplane.rx_mode", "chooses between AF_PACKET's rings and has no meaning with io = \"afxdp\" (one AF_XDP ring per queue); remove it")
		}
		if p.opts.InterfaceQueues != nil && out.Workers > 1 {
			for _, name := range out.Interfaces {
				if q := p.opts.InterfaceQueues(name); q > 0 && q < out.Workers {
					p.errf("dataplane.workers", "is %d, but interface %s has %d receive queue(s); %s", out.Workers, name, q, XDPQueuesHint(name, q, out.Workers))
					break
				}
			}
		}
		if out.Workers > MaxXDPWorkers {
			p.errf("dataplane.workers", "is %d; io = \"afxdp\" runs at most %d workers (0 = one per CPU, no more than the fewest receive queues of the interfaces)", out.Workers, MaxXDPWorkers)
		}
	}

	switch v := raw.Priority.(type) {
	case nil:
	case int64:
		if v < 0 || v > 99 {
			p.errf("dataplane.worker_priority", "%d is out of range; write a SCHED_FIFO priority from 1 to 99, or 0 for the normal scheduler (default)", v)
		} else {
			out.WorkerPriority = int(v)
		}
	default:
		p.errf("dataplane.worker_priority", "is %s; write an integer from 0 to 99 (0 = the normal scheduler)", typeName(v))
	}
}

// ifNameProblem checks a name the way the kernel's dev_valid_name does.
func ifNameProblem(name string) string {
	switch {
	case name == "":
		return `interface name is empty; write a name such as "eth0"`
	case len(name) > maxIfNameLen:
		return fmt.Sprintf("interface name %q is longer than %d bytes, so no interface can have it", name, maxIfNameLen)
	case name == "." || name == "..":
		return fmt.Sprintf("%q is not a valid interface name", name)
	case strings.ContainsAny(name, "/: \t\n\r\v\f"):
		return fmt.Sprintf("interface name %q contains '/', ':' or white space, which the kernel does not allow (aliases like eth0:1 are not interfaces)", name)
	}
	return ""
}

func (p *parser) control(raw *rawControl, out *Control) {
	out.Socket = DefaultControlSocket
	if raw == nil || raw.Socket == nil {
		return
	}
	s, ok := raw.Socket.(string)
	if !ok {
		p.errf("control.socket", "is %s; write an absolute path, e.g. socket = %q", typeName(raw.Socket), DefaultControlSocket)
		return
	}
	if !filepath.IsAbs(s) {
		p.errf("control.socket", "%q is not an absolute path; write one starting with /, e.g. socket = %q", s, DefaultControlSocket)
		return
	}
	out.Socket = filepath.Clean(s)
	if !p.opts.SkipFileChecks {
		// govs replaces a stale socket, never anything else (control.NewServer).
		if fi, err := os.Lstat(out.Socket); err == nil && fi.Mode()&fs.ModeSocket == 0 {
			what := "a file"
			switch {
			case fi.IsDir():
				what = "a directory"
			case fi.Mode()&fs.ModeSymlink != 0:
				what = "a symbolic link"
			}
			p.errf("control.socket", "%q is %s, not a socket, and govs would refuse to start on it; name a path where govs may create its socket, e.g. socket = %q", s, what, DefaultControlSocket)
		}
	}
}

func (p *parser) timeouts(raw *rawTimeouts, out *Timeouts) {
	if raw == nil {
		raw = &rawTimeouts{}
	}
	out.TCP = p.duration("timeouts.tcp", raw.TCP, DefaultTimeoutTCP)
	out.TCPFin = p.duration("timeouts.tcp_fin", raw.TCPFin, DefaultTimeoutTCPFin)
	out.UDP = p.duration("timeouts.udp", raw.UDP, DefaultTimeoutUDP)
	out.TCPSynRecv = p.duration("timeouts.tcp_syn_recv", raw.TCPSynRecv, DefaultTimeoutTCPSynRecv)
	out.TCPSynSent = p.duration("timeouts.tcp_syn_sent", raw.TCPSynSent, DefaultTimeoutTCPSynSent)
	out.TCPTimeWait = p.duration("timeouts.tcp_time_wait", raw.TCPTimeWait, DefaultTimeoutTCPTimeWait)
	out.TCPClose = p.duration("timeouts.tcp_close", raw.TCPClose, DefaultTimeoutTCPClose)
	out.TCPCloseWait = p.duration("timeouts.tcp_close_wait", raw.TCPCloseWait, DefaultTimeoutTCPCloseWait)
	out.TCPLastAck = p.duration("timeouts.tcp_last_ack", raw.TCPLastAck, DefaultTimeoutTCPLastAck)
}

func (p *parser) duration(field string, v any, def time.Duration) time.Duration {
	if v == nil {
		return def
	}
	s, ok := v.(string)
	if !ok {
		p.errf(field, "is %s; write a quoted Go duration, e.g. %q", typeName(v), def.String())
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		p.errf(field, "%q is not a duration; write a Go duration such as %q or \"15m\"", s, def.String())
		return def
	}
	if d <= 0 {
		p.errf(field, "%q is not positive; write a duration greater than zero, e.g. %q", s, def.String())
		return def
	}
	return d
}

func (p *parser) virtualServers(raws []rawVirtualServer, c *Config) {
	seen := make(map[string]int) // Key → 1-based index of its first appearance
	for i := range raws {
		vsField := fmt.Sprintf("virtual_server[%d]", i+1)
		vs, ok := p.virtualServer(vsField, &raws[i])
		if !ok {
			continue
		}
		if j, dup := seen[vs.Key()]; dup {
			p.errf(vsField+".address", "%s %s is already defined by virtual_server[%d] at line %d; each protocol and address may appear once",
				vs.Protocol, vs.Address, j, c.VirtualServers[j-1].Line)
			continue
		}
		seen[vs.Key()] = i + 1
		c.VirtualServers = append(c.VirtualServers, vs)
	}
	p.localAddressClashes(c)
	p.realHandles(c)
	p.localReach(c)
}

// virtualServer validates one [[virtual_server]]; ok is false if anything in
// it is wrong.
func (p *parser) virtualServer(field string, raw *rawVirtualServer) (vs VirtualServer, ok bool) {
	before := len(p.errs)
	vs.Line = p.pos.lineOf(field)

	addrOK := false
	if s, isString := p.requiredString(field+".address", raw.Address, `address = "198.18.0.100:80" (IPv6: "[2001:2::100]:80")`); isString {
		ap, msg := parseAddrPort(s, 80)
		switch {
		case msg != "":
			p.errf(field+".address", "%s", msg)
		case ap.Addr().IsUnspecified(), ap.Addr().IsMulticast(), ap.Addr().IsLoopback():
			p.errf(field+".address", "%s is %s and cannot be a virtual server address; use an address clients reach this host on", ap.Addr(), addrKind(ap.Addr()))
		default:
			vs.Address, addrOK = ap, true
		}
	}

	if s, isString := p.requiredString(field+".protocol", raw.Protocol, `protocol = "tcp" or protocol = "udp"`); isString {
		switch s {
		case "tcp":
			vs.Protocol = ProtocolTCP
		case "udp":
			vs.Protocol = ProtocolUDP
		case "sctp":
			p.errf(field+".protocol", `protocol "sctp" is not implemented yet; use tcp or udp`)
		default:
			p.errf(field+".protocol", `unknown protocol %q; write "tcp" or "udp"%s`, s, lowerHint(s, "tcp", "udp"))
		}
	}

	p.scheduler(field+".scheduler", raw.Scheduler, &vs)
	p.schedulerFlags(field+".scheduler_flags", raw.SchedulerFlags, &vs)
	p.mhTableSize(field+".mh_table_size", raw.MHTableSize, &vs)

	if s, isString := p.requiredString(field+".method", raw.Method, `method = "nat", "dr", "tun" or "fullnat"`); isString {
		switch s {
		case "nat":
			vs.Method = MethodNAT
		case "dr":
			vs.Method = MethodDR
		case "tun":
			vs.Method = MethodTun
		case "fullnat":
			vs.Method = MethodFullNAT
		default:
			p.errf(field+".method", `unknown method %q; write "nat", "dr", "tun" or "fullnat"%s`, s, lowerHint(s, "nat", "dr", "tun", "fullnat"))
		}
	}
	p.tunnel(field, raw, &vs)
	p.localAddresses(field, raw, &vs, addrOK)

	p.persistence(field, raw, &vs, addrOK)
	p.onePacket(field+".one_packet", raw.OnePacket, &vs)

	if len(raw.RealServer) == 0 {
		p.errf(field+".real_server", "virtual server has no real servers; add at least one [[virtual_server.real_server]] with an address")
	}
	seen := make(map[netip.AddrPort]int)
	for j := range raw.RealServer {
		rsField := fmt.Sprintf("%s.real_server[%d]", field, j+1)
		rs, rsOK := p.realServer(rsField, &raw.RealServer[j], vs, addrOK)
		if !rsOK {
			continue
		}
		if k, dup := seen[rs.Address]; dup {
			p.errf(rsField+".address", "%s is already listed as real_server[%d] of this virtual server; list each real server once", rs.Address, k)
			continue
		}
		seen[rs.Address] = j + 1
		vs.RealServers = append(vs.RealServers, rs)
	}
	p.healthChecks(field, raw, &vs, seen, addrOK)
	return vs, len(p.errs) == before
}

func (p *parser) scheduler(field string, v any, vs *VirtualServer) {
	var name string
	switch v := v.(type) {
	case nil:
	case string:
		name = v
	default:
		p.errf(field, "is %s; write a quoted scheduler name, e.g. scheduler = %q (one of %s)", typeName(v), sched.DefaultScheduler, strings.Join(ImplementedSchedulers, ", "))
		return
	}
	switch {
	case name == "":
		vs.Scheduler = sched.DefaultScheduler // IPVS's default
	case slices.Contains(ImplementedSchedulers, name):
		vs.Scheduler = name
	default:
		p.errf(field, "unknown scheduler %q%s; use one of the IPVS schedulers %s (omit it for %s)",
			name, lowerHint(name, ImplementedSchedulers...), strings.Join(ImplementedSchedulers, ", "), sched.DefaultScheduler)
	}
}

// lowerHint suggests the lower-case spelling when s differs from a valid
// value only in case.
func lowerHint(s string, valid ...string) string {
	for _, v := range valid {
		if strings.EqualFold(s, v) {
			return fmt.Sprintf(" (names are lower case: %q)", v)
		}
	}
	return ""
}

func (p *parser) realServer(field string, raw *rawRealServer, vs VirtualServer, vipOK bool) (rs RealServer, ok bool) {
	before := len(p.errs)
	rs.Line = p.pos.lineOf(field)
	port := uint16(80)
	if vipOK {
		port = vs.Address.Port()
	}
	if s, isString := p.requiredString(field+".address", raw.Address, fmt.Sprintf(`address = %q`, netip.AddrPortFrom(netip.MustParseAddr("198.19.0.11"), port))); isString {
		ap, msg := parseAddrPort(s, port)
		switch {
		case msg != "":
			p.errf(field+".address", "%s", msg)
		case ap.Port() == 0 && !(vipOK && vs.Address.Port() == 0):
			// Port 0 means "the port the client asked for", which only a port-0 (all ports)
			// virtual server leaves open, as in IPVS.
			p.errf(field+".address", "port 0 is not allowed; write the port the real server listens on, e.g. %q", netip.AddrPortFrom(ap.Addr(), port).String())
		case ap.Addr().IsUnspecified(), ap.Addr().IsMulticast(), ap.Addr().IsLoopback():
			p.errf(field+".address", "%s is %s and cannot be a real server address; use the real server's own address", ap.Addr(), addrKind(ap.Addr()))
		case vipOK && ap.Addr().Is4() != vs.Address.Addr().Is4():
			p.errf(field+".address", "%s is %s but the virtual server %s is %s; real servers must have the virtual server's address family",
				ap, family(ap.Addr()), vs.Address, family(vs.Address.Addr()))
		case vipOK && (vs.Method == MethodDR || vs.Method == MethodTun) && ap.Port() != vs.Address.Port():
			p.errf(field+".address", "port %d differs from the virtual server port %d; method %s forwards without rewriting ports, so write %q",
				ap.Port(), vs.Address.Port(), vs.Method, netip.AddrPortFrom(ap.Addr(), vs.Address.Port()).String())
		default:
			rs.Address = ap
		}
	}

	switch v := raw.Weight.(type) {
	case nil:
		rs.Weight = 1
	case int64:
		if v < 0 || v > maxWeight {
			p.errf(field+".weight", "%d is out of range; write a weight from 0 to %d (0 = no new connections)", v, maxWeight)
		} else {
			rs.Weight = int(v)
		}
	default:
		p.errf(field+".weight", "is %s; write an integer from 0 to %d, e.g. weight = 1 (0 = no new connections)", typeName(v), maxWeight)
	}
	p.thresholds(field, raw, &rs)
	return rs, len(p.errs) == before
}

// requiredString returns v as a string, reporting it as missing or of the
// wrong type with example showing what to write.
func (p *parser) requiredString(field string, v any, example string) (string, bool) {
	switch v := v.(type) {
	case nil:
		p.errf(field, "is required; write %s", example)
	case string:
		return v, true
	default:
		p.errf(field, "is %s; write %s", typeName(v), example)
	}
	return "", false
}

// parseAddrPort parses "ip:port" or "[ipv6]:port" and explains what is wrong
// otherwise; examplePort goes into suggestions.
func parseAddrPort(s string, examplePort uint16) (netip.AddrPort, string) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil {
			if a.Zone() != "" {
				return ap, fmt.Sprintf("%q has a zone; zones are not supported, use an address without %%zone", s)
			}
			return ap, fmt.Sprintf("%q has no port; write %q", s, netip.AddrPortFrom(a, examplePort).String())
		}
		host, port, serr := net.SplitHostPort(s)
		if serr == nil && host != "" && strings.Trim(host, "0123456789.:abcdefABCDEF%") != "" {
			return ap, fmt.Sprintf("%q is not an IP address and names are not looked up; write an IP address and port such as \"198.18.0.100:80\" or \"[2001:2::100]:80\"", host)
		}
		if a, aerr := netip.ParseAddr(host); serr == nil && aerr == nil && a.Zone() == "" {
			// The address is fine, so the port is what is wrong: say so rather than blame the whole.
			example := netip.AddrPortFrom(a, examplePort).String()
			switch digits := strings.TrimPrefix(port, "-"); {
			case port == "":
				return ap, fmt.Sprintf("%q has no port; write %q", s, example)
			case digits != "" && strings.Trim(digits, "0123456789") == "":
				return ap, fmt.Sprintf("port %s in %q is out of range; write a port from 0 to 65535, e.g. %q", port, s, example)
			default:
				return ap, fmt.Sprintf("port %q in %q is not a number and names are not looked up; write e.g. %q", port, s, example)
			}
		}
		return ap, fmt.Sprintf("%q is not an address and port; write e.g. \"198.18.0.100:80\" or \"[2001:2::100]:80\"", s)
	}
	a := ap.Addr()
	switch {
	case a.Zone() != "":
		return netip.AddrPort{}, fmt.Sprintf("%q has a zone; zones are not supported, use an address without %%zone", s)
	case a.Is4In6():
		return netip.AddrPort{}, fmt.Sprintf("%q is an IPv4-mapped IPv6 address; write the IPv4 form %q", s, netip.AddrPortFrom(a.Unmap(), ap.Port()).String())
	}
	return ap, ""
}

func addrKind(a netip.Addr) string {
	switch {
	case a.IsUnspecified():
		return "the unspecified address"
	case a.IsMulticast():
		return "a multicast address"
	case a.IsLoopback():
		return "a loopback address"
	}
	return "an address"
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}
