package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/govs/govs/health"
)

// healthWired says whether the daemon acts on health checks: runs the monitors, takes servers that
// go down out of rotation, and honours on_failure, slow_start, notify, sorry_server and quorum.
// While it is false, validation rejects every one of those keys (and every kind but "none"),
// because a key that is accepted but does nothing misleads the operator. The daemon acts on all
// of them (package daemon, health.go; package compile, health.go), so it is true; tests turn it
// off to check the rejection.
var healthWired = true

// notWired is the message of every health key healthWired rejects.
const notWired = "health checks are not wired into the data plane yet"

// On-failure policies of a health check: what happens to a real server that goes down.
const (
	// OnFailureRemove takes the server out of rotation (default).
	OnFailureRemove = "remove"
	// OnFailureQuiesce keeps it with weight 0: no new connections, existing ones carry on
	// (keepalived's inhibit_on_failure).
	OnFailureQuiesce = "quiesce"
)

// Bounds of the health check keys.
const (
	minHealthInterval = 100 * time.Millisecond
	minHealthTimeout  = 10 * time.Millisecond
	maxHealthDuration = 24 * time.Hour // interval, timeout and slow_start
	maxRiseFall       = 1000
)

// HealthCheck is a [virtual_server.health_check] or [virtual_server.real_server.health_check]
// table: how a real server is checked, and what happens when it goes down.
type HealthCheck struct {
	// Check is what to check and how often, every default filled in (health.Default*; timeout
	// at most interval): never of kind none, since then there is no HealthCheck at all.
	Check health.Spec
	// OnFailure is OnFailureRemove or OnFailureQuiesce.
	OnFailure string
	// SlowStart is how long a server that came back takes to reach its full weight; 0 = at once.
	SlowStart time.Duration
}

// healthCheckKeys are the keys of a health_check table, in the order the documentation gives
// them; a real server's table has the same keys as its virtual server's, each overriding it.
var healthCheckKeys = []string{"kind", "interval", "timeout", "rise", "fall", "port",
	"path", "host", "expect_status", "expect_body", "tls_verify", "sni", "send", "expect",
	"query", "query_type", "command", "notify", "on_failure", "slow_start"}

// healthKeyKinds lists the kinds each kind-specific key is for; the other keys are for every
// kind but none.
var healthKeyKinds = map[string][]health.Kind{
	"path":          {health.KindHTTP, health.KindHTTPS},
	"host":          {health.KindHTTP, health.KindHTTPS},
	"expect_status": {health.KindHTTP, health.KindHTTPS},
	"expect_body":   {health.KindHTTP, health.KindHTTPS},
	"tls_verify":    {health.KindHTTPS},
	"sni":           {health.KindHTTPS},
	"send":          {health.KindSendExpect, health.KindUDP},
	"expect":        {health.KindSendExpect, health.KindUDP},
	"query":         {health.KindDNS},
	"query_type":    {health.KindDNS},
	"command":       {health.KindExec},
}

// healthKeyApplies reports whether key means something to a check of kind k.
func healthKeyApplies(key string, k health.Kind) bool {
	if key == "kind" {
		return true
	}
	if k == health.KindNone {
		return false
	}
	kinds, specific := healthKeyKinds[key]
	return !specific || slices.Contains(kinds, k)
}

func kindList(kinds []health.Kind) string {
	s := make([]string, len(kinds))
	for i, k := range kinds {
		s[i] = k.String()
	}
	return strings.Join(s, " and ")
}

type rawHealthCheck struct {
	Kind         any `toml:"kind"`
	Interval     any `toml:"interval"`
	Timeout      any `toml:"timeout"`
	Rise         any `toml:"rise"`
	Fall         any `toml:"fall"`
	Port         any `toml:"port"`
	Path         any `toml:"path"`
	Host         any `toml:"host"`
	ExpectStatus any `toml:"expect_status"`
	ExpectBody   any `toml:"expect_body"`
	TLSVerify    any `toml:"tls_verify"`
	SNI          any `toml:"sni"`
	Send         any `toml:"send"`
	Expect       any `toml:"expect"`
	Query        any `toml:"query"`
	QueryType    any `toml:"query_type"`
	Command      any `toml:"command"`
	Notify       any `toml:"notify"`
	OnFailure    any `toml:"on_failure"`
	SlowStart    any `toml:"slow_start"`
}

// values returns the keys written, in healthCheckKeys order.
func (r *rawHealthCheck) values() []keyValue {
	if r == nil {
		return nil
	}
	all := []any{r.Kind, r.Interval, r.Timeout, r.Rise, r.Fall, r.Port, r.Path, r.Host,
		r.ExpectStatus, r.ExpectBody, r.TLSVerify, r.SNI, r.Send, r.Expect, r.Query, r.QueryType,
		r.Command, r.Notify, r.OnFailure, r.SlowStart}
	var out []keyValue
	for i, v := range all {
		if v != nil {
			out = append(out, keyValue{healthCheckKeys[i], v})
		}
	}
	return out
}

type keyValue struct {
	key string
	v   any
}

// healthState is a health check being put together: the service's table, then a real server's
// keys over it. where records the field each key was last written at, for messages.
type healthState struct {
	table string // the field of the table in effect: the real server's once it has keys
	hc    HealthCheck
	where map[string]string
}

func (s *healthState) clone() *healthState {
	c := &healthState{table: s.table, hc: s.hc, where: make(map[string]string, len(s.where))}
	for k, v := range s.where {
		c.where[k] = v
	}
	c.hc.Check.ExpectStatus = slices.Clone(s.hc.Check.ExpectStatus)
	c.hc.Check.Command = slices.Clone(s.hc.Check.Command)
	c.hc.Check.Notify = slices.Clone(s.hc.Check.Notify)
	return c
}

// fieldOf is where key was written, or where to write it: the table in effect.
func (s *healthState) fieldOf(key string) string {
	if f, ok := s.where[key]; ok {
		return f
	}
	return s.table + "." + key
}

// healthChecks validates the health_check tables of one virtual server and of its real servers
// (vs.RealServers, each the raw real_server[index[address]-1]), sorry_server and quorum, and
// fills them into vs.
func (p *parser) healthChecks(field string, raw *rawVirtualServer, vs *VirtualServer, index map[netip.AddrPort]int, vipOK bool) {
	seen := make(map[string]bool) // field + message already reported: inherited keys repeat
	errf := func(f, format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if !seen[f+"\x00"+msg] {
			seen[f+"\x00"+msg] = true
			p.errf(f, "%s", msg)
		}
	}

	svc := &healthState{
		table: field + ".health_check",
		hc: HealthCheck{
			Check: health.Spec{Interval: health.DefaultInterval, Rise: health.DefaultRise, Fall: health.DefaultFall},
			// Set below once the interval is known: at most DefaultTimeout, at most interval.
			OnFailure: OnFailureRemove,
		},
		where: make(map[string]string),
	}
	p.healthKeys(svc, raw.HealthCheck)
	// The service's table is checked as a whole through its real servers', which inherit it;
	// only a virtual server without (valid) real servers has it checked on its own.
	vs.HealthCheck = p.finishHealth(svc, errf, netip.AddrPort{}, false, len(vs.RealServers) == 0)

	// usedBy counts, for each key the service's table writes, the real servers whose check
	// inherits it and means something by it.
	usedBy := make(map[string]int)
	for i := range vs.RealServers {
		rs := &vs.RealServers[i]
		var rawRS *rawHealthCheck
		if j := index[rs.Address]; j > 0 {
			rawRS = raw.RealServer[j-1].HealthCheck
		}
		st := svc.clone()
		if rawRS != nil && len(rawRS.values()) > 0 {
			st.table = fmt.Sprintf("%s.real_server[%d].health_check", field, index[rs.Address])
		}
		p.healthKeys(st, rawRS)
		for key, f := range st.where {
			if f == svc.where[key] && healthKeyApplies(key, st.hc.Check.Kind) {
				usedBy[key]++
			}
		}
		if rawRS != nil {
			p.keysApply(st, rawRS, errf)
		}
		rs.HealthCheck = p.finishHealth(st, errf, rs.Address, true, true)
	}
	// The service's keys need a check that uses them, its own or a real server's.
	for _, kv := range raw.HealthCheck.values() {
		if usedBy[kv.key] > 0 || kv.key == "kind" || len(vs.RealServers) == 0 && healthKeyApplies(kv.key, svc.hc.Check.Kind) {
			continue
		}
		f := svc.where[kv.key]
		if kinds, specific := healthKeyKinds[kv.key]; specific {
			errf(f, "has no effect: it is for kind %s, and no real server of this virtual server is checked so; remove it, or set kind", kindList(kinds))
		} else {
			errf(f, "has no effect without a check: kind is \"none\" here and in every real server; set kind (e.g. kind = \"tcp\") or remove it")
		}
	}

	p.sorryServer(field+".sorry_server", raw.SorryServer, vs, vipOK)
	p.quorum(field+".quorum", raw.Quorum, vs)

	if !healthWired {
		p.rejectUnwired(field, raw, index)
	}
}

// keysApply reports the keys a real server's own table writes that its check does not use.
func (p *parser) keysApply(st *healthState, raw *rawHealthCheck, errf func(string, string, ...any)) {
	k := st.hc.Check.Kind
	for _, kv := range raw.values() {
		if healthKeyApplies(kv.key, k) {
			continue
		}
		if k == health.KindNone {
			errf(st.where[kv.key], "has no effect without a check: kind is \"none\" for this real server; set kind (e.g. kind = \"tcp\") or remove it")
		} else {
			errf(st.where[kv.key], "has no effect with kind %q: it is for kind %s; remove it", k, kindList(healthKeyKinds[kv.key]))
		}
	}
}

// finishHealth fills in the defaults that depend on other keys and, when check is set, checks the
// keys that go together. It returns nil when there is no check (kind none). server is the real
// server checked, when forServer.
func (p *parser) finishHealth(st *healthState, errf func(string, string, ...any), server netip.AddrPort, forServer, check bool) *HealthCheck {
	c := &st.hc.Check
	if _, set := st.where["timeout"]; !set {
		c.Timeout = min(health.DefaultTimeout, c.Interval)
	}
	if c.Kind == health.KindNone {
		return nil
	}
	dropInherited(c)
	if !check {
		hc := st.hc
		return &hc
	}
	if c.Timeout > c.Interval {
		f := st.fieldOf("timeout")
		if _, set := st.where["timeout"]; !set {
			f = st.fieldOf("interval")
		}
		errf(f, "timeout %s is longer than interval %s: a check must end before the next starts; shorten timeout or lengthen interval", c.Timeout, c.Interval)
	}
	// What each kind cannot do without; reported in the table that set the kind.
	kindTable := strings.TrimSuffix(st.fieldOf("kind"), ".kind")
	// A key written with a bad value has its own message already.
	missing := func(key string) bool { _, written := st.where[key]; return !written }
	switch {
	case c.Kind == health.KindSendExpect && missing("expect"):
		errf(kindTable+".expect", `is required for kind "send_expect": write the regexp the reply must match, e.g. expect = "^\\+PONG" (use kind = "tcp" to check only that connections are accepted)`)
	case c.Kind == health.KindUDP && missing("send"):
		errf(kindTable+".send", `is required for kind "udp": UDP has no connection to see accepted, so write the datagram to send, e.g. send = "ping"`)
	case c.Kind == health.KindDNS && missing("query"):
		errf(kindTable+".query", `is required for kind "dns": write the name to ask for, e.g. query = "example.com."`)
	case c.Kind == health.KindExec && missing("command"):
		errf(kindTable+".command", `is required for kind "exec": write the program and its arguments, e.g. command = ["/usr/local/bin/check", "--quick"]`)
	}
	if forServer && c.Kind != health.KindExec && c.Port == 0 && server.Port() == 0 {
		errf(st.table+".port", "is required: real server %s has port 0 (all ports), so write the port to check, e.g. port = 80", server)
	}
	hc := st.hc
	return &hc
}

// dropInherited clears the keys c's kind does not use (a real server may inherit a path from an
// http service and check with kind tcp), so that two checks that do the same compare equal, and
// fills in the defaults of the keys it does use.
func dropInherited(c *health.Spec) {
	k := c.Kind
	for key := range healthKeyKinds {
		if healthKeyApplies(key, k) {
			continue
		}
		switch key {
		case "path":
			c.Path = ""
		case "host":
			c.Host = ""
		case "expect_status":
			c.ExpectStatus = nil
		case "expect_body":
			c.ExpectBody = ""
		case "tls_verify":
			c.TLSVerify = false
		case "sni":
			c.SNI = ""
		case "send":
			c.Send = ""
		case "expect":
			c.Expect = ""
		case "query":
			c.Query = ""
		case "query_type":
			c.QueryType = ""
		case "command":
			c.Command = nil
		}
	}
	switch {
	case (k == health.KindHTTP || k == health.KindHTTPS) && c.Path == "":
		c.Path = "/"
	case k == health.KindDNS && c.QueryType == "":
		c.QueryType = health.DefaultQueryType
	}
}

// healthKeys parses the keys raw writes over st.
func (p *parser) healthKeys(st *healthState, raw *rawHealthCheck) {
	for _, kv := range raw.values() {
		f := st.table + "." + kv.key
		st.where[kv.key] = f
		c := &st.hc.Check
		switch kv.key {
		case "kind":
			p.healthKind(f, kv.v, c)
		case "interval":
			if d, ok := p.healthDuration(f, kv.v, minHealthInterval, health.DefaultInterval); ok {
				c.Interval = d
			}
		case "timeout":
			if d, ok := p.healthDuration(f, kv.v, minHealthTimeout, health.DefaultTimeout); ok {
				c.Timeout = d
			}
		case "rise":
			if n, ok := p.intIn(f, kv.v, 1, maxRiseFall, "consecutive successes that bring a server back", health.DefaultRise); ok {
				c.Rise = n
			}
		case "fall":
			if n, ok := p.intIn(f, kv.v, 1, maxRiseFall, "consecutive failures that take a server out", health.DefaultFall); ok {
				c.Fall = n
			}
		case "port":
			if n, ok := p.intIn(f, kv.v, 1, 65535, "port to check (omit it for the real server's port)", 8080); ok {
				c.Port = uint16(n)
			}
		case "path":
			if s, ok := p.healthString(f, kv.v, `path = "/healthz"`); ok {
				if !strings.HasPrefix(s, "/") || strings.ContainsFunc(s, badTextRune) {
					p.errf(f, "%q is not a request path; write one starting with / and without spaces, e.g. path = \"/healthz\"", s)
				} else {
					c.Path = s
				}
			}
		case "host":
			if s, ok := p.healthString(f, kv.v, `host = "www.example.com"`); ok {
				if strings.ContainsFunc(s, badTextRune) || strings.ContainsAny(s, "/?#@") {
					p.errf(f, "%q is not a host name; write the name the server answers to, e.g. host = \"www.example.com\"", s)
				} else {
					c.Host = s
				}
			}
		case "expect_status":
			p.expectStatus(f, kv.v, c)
		case "expect_body":
			if s, ok := p.regexpKey(f, kv.v, `expect_body = "\"status\": *\"ok\""`); ok {
				c.ExpectBody = s
			}
		case "tls_verify":
			if b, ok := kv.v.(bool); ok {
				c.TLSVerify = b
			} else {
				p.errf(f, "is %s; write tls_verify = true or false (unquoted)", typeName(kv.v))
			}
		case "sni":
			if s, ok := p.healthString(f, kv.v, `sni = "www.example.com"`); ok {
				if strings.ContainsFunc(s, badTextRune) || strings.ContainsAny(s, "/:") {
					p.errf(f, "%q is not a server name; write a host name, e.g. sni = \"www.example.com\"", s)
				} else {
					c.SNI = s
				}
			}
		case "send":
			if s, ok := p.healthString(f, kv.v, `send = "PING\r\n"`); ok {
				c.Send = s
			}
		case "expect":
			if s, ok := p.regexpKey(f, kv.v, `expect = "^\\+PONG"`); ok {
				c.Expect = s
			}
		case "query":
			if s, ok := p.healthString(f, kv.v, `query = "example.com."`); ok {
				if q, err := health.CanonicalQuery(s); err != nil {
					p.errf(f, "is not a DNS name: %v; write one such as query = \"example.com.\"", err)
				} else {
					c.Query = q
				}
			}
		case "query_type":
			if s, ok := p.healthString(f, kv.v, `query_type = "A"`); ok {
				if health.ValidQueryType(s) {
					c.QueryType = s
				} else {
					hint := ""
					if health.ValidQueryType(strings.ToUpper(s)) {
						hint = fmt.Sprintf(" (types are upper case: %q)", strings.ToUpper(s))
					}
					p.errf(f, "%q is not a query type govs asks for; write one of %s%s", s, strings.Join(health.QueryTypeNames(), ", "), hint)
				}
			}
		case "command":
			if argv, ok := p.argv(f, kv.v, `command = ["/usr/local/bin/check", "--quick"]`); ok {
				c.Command = argv
			}
		case "notify":
			if argv, ok := p.argv(f, kv.v, `notify = ["/usr/local/bin/notify-health"]`); ok {
				c.Notify = argv
			}
		case "on_failure":
			if s, ok := p.healthString(f, kv.v, `on_failure = "remove"`); ok {
				switch s {
				case OnFailureRemove, OnFailureQuiesce:
					st.hc.OnFailure = s
				default:
					p.errf(f, "%q is not a policy; write %q (default: out of rotation) or %q (weight 0: existing connections carry on)%s",
						s, OnFailureRemove, OnFailureQuiesce, lowerHint(s, OnFailureRemove, OnFailureQuiesce))
				}
			}
		case "slow_start":
			p.slowStart(f, kv.v, &st.hc)
		}
	}
}

func (p *parser) healthKind(f string, v any, c *health.Spec) {
	names := strings.Join(health.KindNames()[1:], ", ")
	s, ok := v.(string)
	if !ok {
		p.errf(f, "is %s; write one of %s, or none, e.g. kind = \"tcp\"", typeName(v), names)
		return
	}
	k, ok := health.ParseKind(s)
	if !ok {
		p.errf(f, "unknown kind %q; write one of %s, or none%s", s, names, lowerHint(s, health.KindNames()...))
		return
	}
	c.Kind = k
}

// badTextRune is what a path, host or server name cannot hold: white space and control bytes.
func badTextRune(r rune) bool { return r <= ' ' || r == 0x7f }

func (p *parser) healthString(f string, v any, example string) (string, bool) {
	s, ok := v.(string)
	switch {
	case !ok:
		p.errf(f, "is %s; write a string, e.g. %s", typeName(v), example)
	case s == "":
		p.errf(f, "is empty; write a value, e.g. %s, or remove it", example)
	default:
		return s, true
	}
	return "", false
}

func (p *parser) healthDuration(f string, v any, lo, def time.Duration) (time.Duration, bool) {
	s, ok := v.(string)
	if !ok {
		p.errf(f, "is %s; write a quoted Go duration, e.g. %q", typeName(v), def.String())
		return 0, false
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		p.errf(f, "%q is not a duration; write a Go duration such as %q or \"500ms\"", s, def.String())
	case d < lo || d > maxHealthDuration:
		p.errf(f, "%q is out of range; write a duration from %s to %s, e.g. %q", s, lo, maxHealthDuration, def.String())
	default:
		return d, true
	}
	return 0, false
}

func (p *parser) intIn(f string, v any, lo, hi int64, what string, example int) (int, bool) {
	n, ok := v.(int64)
	switch {
	case !ok:
		p.errf(f, "is %s; write an integer from %d to %d, the %s, e.g. %d", typeName(v), lo, hi, what, example)
	case n < lo || n > hi:
		p.errf(f, "%d is out of range; write an integer from %d to %d, the %s", n, lo, hi, what)
	default:
		return int(n), true
	}
	return 0, false
}

func (p *parser) expectStatus(f string, v any, c *health.Spec) {
	const example = "expect_status = [200, 204]"
	list, ok := v.([]any)
	if !ok {
		p.errf(f, "is %s; write a list of HTTP status codes, e.g. %s", typeName(v), example)
		return
	}
	if len(list) == 0 {
		p.errf(f, "is empty; list the status codes that mean up, e.g. %s, or remove it (any 2xx)", example)
		return
	}
	var codes []int
	for i, e := range list {
		elem := fmt.Sprintf("%s[%d]", f, i+1)
		n, ok := e.(int64)
		switch {
		case !ok:
			p.errf(elem, "is %s; status codes are integers, e.g. %s", typeName(e), example)
			return
		case n < 100 || n > 599:
			p.errf(elem, "%d is not an HTTP status code; write one from 100 to 599", n)
			return
		case slices.Contains(codes, int(n)):
			p.errf(elem, "%d is already listed; remove the duplicate", n)
			return
		}
		codes = append(codes, int(n))
	}
	c.ExpectStatus = codes
}

func (p *parser) regexpKey(f string, v any, example string) (string, bool) {
	s, ok := p.healthString(f, v, example)
	if !ok {
		return "", false
	}
	if _, err := regexp.Compile(s); err != nil {
		p.errf(f, "%q is not a regular expression (RE2 syntax): %v", s, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		return "", false
	}
	return s, true
}

func (p *parser) argv(f string, v any, example string) ([]string, bool) {
	list, ok := v.([]any)
	if !ok {
		p.errf(f, "is %s; write the program and its arguments as a list of strings, e.g. %s", typeName(v), example)
		return nil, false
	}
	if len(list) == 0 {
		p.errf(f, "is empty; write the program and its arguments, e.g. %s", example)
		return nil, false
	}
	argv := make([]string, 0, len(list))
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			p.errf(fmt.Sprintf("%s[%d]", f, i+1), "is %s; arguments are strings, e.g. %s", typeName(e), example)
			return nil, false
		}
		argv = append(argv, s)
	}
	if !filepath.IsAbs(argv[0]) {
		p.errf(f+"[1]", "%q is not an absolute path; write the program's full path (no PATH search), e.g. %s", argv[0], example)
		return nil, false
	}
	return argv, true
}

func (p *parser) slowStart(f string, v any, hc *HealthCheck) {
	s, ok := v.(string)
	if !ok {
		p.errf(f, "is %s; write a quoted Go duration, e.g. slow_start = \"30s\" (\"0s\" = full weight at once)", typeName(v))
		return
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		p.errf(f, "%q is not a duration; write a Go duration such as \"30s\" (\"0s\" = full weight at once)", s)
	case d < 0 || d > maxHealthDuration:
		p.errf(f, "%q is out of range; write a duration from 0s to %s, e.g. \"30s\"", s, maxHealthDuration)
	default:
		hc.SlowStart = d
	}
}

// sorryServer validates sorry_server: an address and port like a real server's.
func (p *parser) sorryServer(f string, v any, vs *VirtualServer, vipOK bool) {
	if v == nil {
		return
	}
	port := uint16(80)
	if vipOK {
		port = vs.Address.Port()
	}
	example := fmt.Sprintf("sorry_server = %q", netip.AddrPortFrom(netip.MustParseAddr("198.19.0.99"), port))
	s, ok := v.(string)
	if !ok {
		p.errf(f, "is %s; write an address and port, e.g. %s", typeName(v), example)
		return
	}
	ap, msg := parseAddrPort(s, port)
	switch {
	case msg != "":
		p.errf(f, "%s", msg)
	case ap.Addr().IsUnspecified(), ap.Addr().IsMulticast(), ap.Addr().IsLoopback():
		p.errf(f, "%s is %s and cannot be a sorry server; use the sorry server's own address", ap.Addr(), addrKind(ap.Addr()))
	case !vipOK:
	case ap.Port() == 0 && vs.Address.Port() != 0:
		p.errf(f, "port 0 is not allowed; write the port the sorry server listens on, e.g. %q", netip.AddrPortFrom(ap.Addr(), port).String())
	case ap.Addr().Is4() != vs.Address.Addr().Is4():
		p.errf(f, "%s is %s but the virtual server %s is %s; the sorry server must have the virtual server's address family",
			ap, family(ap.Addr()), vs.Address, family(vs.Address.Addr()))
	case (vs.Method == MethodDR || vs.Method == MethodTun) && ap.Port() != vs.Address.Port():
		p.errf(f, "port %d differs from the virtual server port %d; method %s forwards without rewriting ports, so write %q",
			ap.Port(), vs.Address.Port(), vs.Method, netip.AddrPortFrom(ap.Addr(), vs.Address.Port()).String())
	default:
		vs.SorryServer = ap
	}
}

// quorum validates quorum: how many real servers must be up, at most how many there are.
func (p *parser) quorum(f string, v any, vs *VirtualServer) {
	if v == nil {
		return
	}
	n, ok := v.(int64)
	switch {
	case !ok:
		p.errf(f, "is %s; write the number of real servers that must be up, e.g. quorum = 2", typeName(v))
	case n < 0:
		p.errf(f, "%d is negative; write the number of real servers that must be up (0 = no quorum)", n)
	case len(vs.RealServers) > 0 && n > int64(len(vs.RealServers)):
		p.errf(f, "%d is more than the %d real servers of this virtual server, so it could never be met; write at most %d", n, len(vs.RealServers), len(vs.RealServers))
	default:
		vs.Quorum = int(n)
	}
}

// rejectUnwired reports every health key the daemon would not act on yet (see healthWired).
func (p *parser) rejectUnwired(field string, raw *rawVirtualServer, index map[netip.AddrPort]int) {
	tables := []struct {
		field string
		raw   *rawHealthCheck
	}{{field + ".health_check", raw.HealthCheck}}
	for j := range raw.RealServer {
		tables = append(tables, struct {
			field string
			raw   *rawHealthCheck
		}{fmt.Sprintf("%s.real_server[%d].health_check", field, j+1), raw.RealServer[j].HealthCheck})
	}
	for _, t := range tables {
		for _, kv := range t.raw.values() {
			switch kv.key {
			case "kind":
				if s, ok := kv.v.(string); ok && s != health.KindNone.String() {
					p.errf(t.field+".kind", "%s: govs would not check anything; remove this health_check table, or write kind = \"none\"", notWired)
				}
			case "notify", "on_failure", "slow_start":
				// One message a field: a key that has no effect anyway says so already.
				if f := t.field + "." + kv.key; !slices.ContainsFunc(p.errs, func(e *Error) bool { return e.Field == f }) {
					p.errf(f, "%s: govs would not act on %s; remove it", notWired, kv.key)
				}
			}
		}
	}
	if raw.SorryServer != nil {
		p.errf(field+".sorry_server", "%s, and a sorry server takes over only when they find no real server up; remove it", notWired)
	}
	if raw.Quorum != nil {
		p.errf(field+".quorum", "%s, and a quorum counts the real servers they find up; remove it", notWired)
	}
}

// healthShape reports a health_check in table (a virtual or real server) that is not a table,
// which the struct decode would only reject with a Go type name.
func (p *parser) healthShape(field string, table map[string]any) bool {
	v, present := table["health_check"]
	if !present {
		return true
	}
	if _, isTable := v.(map[string]any); isTable {
		return true
	}
	header := "[virtual_server.health_check]"
	if strings.Contains(field, "real_server") {
		header = "[virtual_server.real_server.health_check]"
	}
	p.errf(field+".health_check", "is %s but must be a table; write %s (single brackets) on a line of its own, followed by its keys", typeName(v), header)
	return false
}

// HealthSpecs returns the checks c asks for, by target, as health.Manager.Update takes them:
// every real server with a HealthCheck, under each virtual server it belongs to. Real servers
// without one are not checked, and count as up.
func (c *Config) HealthSpecs() map[health.Target]health.Spec {
	out := make(map[health.Target]health.Spec)
	for i := range c.VirtualServers {
		vs := &c.VirtualServers[i]
		for _, rs := range vs.RealServers {
			if rs.HealthCheck != nil {
				out[health.Target{Service: vs.Key(), Server: rs.Address}] = rs.HealthCheck.Check
			}
		}
	}
	return out
}
