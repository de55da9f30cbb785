package config

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// HA is the [ha] table: this node's part in an active/backup pair (or group). Without it govs
// runs stand-alone and holds its VIPs from the start.
type HA struct {
	// Listen is this node's heartbeat address (an address of this host, with a port): its
	// identity among the nodes, and the tie-breaker between equal priorities (lower wins).
	Listen netip.AddrPort
	// Peers are the other nodes' listen addresses; at least one, same family as Listen.
	Peers []netip.AddrPort
	// Priority is 1..254, the higher wins; DefaultHAPriority when omitted.
	Priority int
	// KeyFile is the absolute path of the shared HMAC key, mode 0600 or stricter.
	KeyFile string
	// AdvertInterval is how often heartbeats are sent; DefaultHAAdvertInterval when omitted.
	AdvertInterval time.Duration
	// DeadAfter is how many advert intervals without a heartbeat make a peer dead, 2..255;
	// DefaultHADeadAfter when omitted.
	DeadAfter int
	// Preempt lets a node take the VIPs back from a lower-ranked active node; default true.
	Preempt bool
	// PreemptDelay is how long a node waits before it preempts (0 = at once).
	PreemptDelay time.Duration
	// GARPRefresh is how often an active node re-announces its addresses (gratuitous ARP,
	// unsolicited NA) after the first announcements; 0 turns refreshing off.
	GARPRefresh time.Duration
	// Floating are addresses that move with the active role besides the VIPs (a NAT real
	// servers' gateway): answered and announced like VIPs.
	Floating []netip.Addr
	Line     int // line of the [ha] header, for messages
}

// [ha] defaults. With them a crashed active node is replaced within 150 to 200 ms
// (DefaultHADeadAfter x DefaultHAAdvertInterval after its last heartbeat), which keeps the
// longest stall of a stream under 300 ms (see the README's HA section for the budget).
const (
	DefaultHAPriority       = 100
	DefaultHAAdvertInterval = 50 * time.Millisecond
	DefaultHADeadAfter      = 4
	DefaultHAGARPRefresh    = 10 * time.Second
)

// Bounds of [ha] values.
const (
	minHAAdvertInterval = 10 * time.Millisecond // below a scheduler tick or two, heartbeats jitter too much
	maxHAAdvertInterval = 10 * time.Second
	minHAGARPRefresh    = 100 * time.Millisecond
	minHAKeyLen         = 16 // ha.MinKeyLen
)

type rawHA struct {
	Listen         any `toml:"listen"`
	Peers          any `toml:"peers"`
	Priority       any `toml:"priority"`
	KeyFile        any `toml:"key_file"`
	AdvertInterval any `toml:"advert_interval"`
	DeadAfter      any `toml:"dead_after"`
	Preempt        any `toml:"preempt"`
	PreemptDelay   any `toml:"preempt_delay"`
	GARPRefresh    any `toml:"garp_refresh"`
	Floating       any `toml:"floating"`
}

var haKeys = []string{"listen", "peers", "priority", "key_file", "advert_interval", "dead_after",
	"preempt", "preempt_delay", "garp_refresh", "floating"}

// ha validates [ha]; c.VirtualServers must be parsed already (addresses may not clash with VIPs).
func (p *parser) ha(raw *rawHA, c *Config) {
	if raw == nil {
		return
	}
	h := &HA{Line: p.pos.lineOf("ha"), Preempt: true}
	before := len(p.errs)
	const example = `listen = "198.18.0.3:8405"`

	vips := map[netip.Addr]bool{}
	for _, vs := range c.VirtualServers {
		vips[vs.Address.Addr()] = true
	}
	if s, ok := p.requiredString("ha.listen", raw.Listen, example+` (an address of this host and a port)`); ok {
		if ap, msg := p.haAddrPort(s); msg != "" {
			p.errf("ha.listen", "%s", msg)
		} else if vips[ap.Addr()] {
			p.errf("ha.listen", "%s is a virtual server address, which moves between the nodes; listen on an address of this host's own", ap.Addr())
		} else if p.opts.AddressInterface != nil && !ap.Addr().IsUnspecified() && p.opts.AddressInterface(ap.Addr()) == "" {
			p.errf("ha.listen", "%s is not an address of this host (of none of its interfaces, in this network namespace): listen on one of its own", ap.Addr())
		} else {
			h.Listen = ap
		}
	}

	switch v := raw.Peers.(type) {
	case nil:
		p.errf("ha.peers", `is required; list the other nodes' listen addresses, e.g. peers = ["198.18.0.4:8405"]`)
	case []any:
		if len(v) == 0 {
			p.errf("ha.peers", `is empty; list at least one other node, e.g. peers = ["198.18.0.4:8405"]`)
		}
		seen := map[netip.AddrPort]int{}
		for i, e := range v {
			field := fmt.Sprintf("ha.peers[%d]", i+1)
			s, ok := e.(string)
			if !ok {
				p.errf(field, `is %s; write an address and port in quotes, e.g. "198.18.0.4:8405"`, typeName(e))
				continue
			}
			ap, msg := p.haAddrPort(s)
			switch {
			case msg != "":
				p.errf(field, "%s", msg)
			case ap == h.Listen:
				p.errf(field, "%s is this node's own listen address; list only the other nodes", ap)
			case h.Listen.IsValid() && ap.Addr().Is4() != h.Listen.Addr().Is4():
				p.errf(field, "%s is %s but listen %s is %s; heartbeats go out of one socket, so use one family", ap, family(ap.Addr()), h.Listen, family(h.Listen.Addr()))
			default:
				if j, dup := seen[ap]; dup {
					p.errf(field, "%s is already listed as ha.peers[%d]; list each peer once", ap, j)
					continue
				}
				seen[ap] = i + 1
				h.Peers = append(h.Peers, ap)
			}
		}
	default:
		p.errf("ha.peers", `is %s; write a list, e.g. peers = ["198.18.0.4:8405"]`, typeName(v))
	}

	h.Priority = DefaultHAPriority
	switch v := raw.Priority.(type) {
	case nil:
	case int64:
		if v < 1 || v > 254 {
			p.errf("ha.priority", "%d is out of range; write a priority from 1 to 254 (the higher wins; default %d)", v, DefaultHAPriority)
		} else {
			h.Priority = int(v)
		}
	default:
		p.errf("ha.priority", "is %s; write an integer from 1 to 254, e.g. priority = 200", typeName(v))
	}

	if s, ok := p.requiredString("ha.key_file", raw.KeyFile, `key_file = "/etc/govs/ha.key" (the same secret on every node, mode 0600)`); ok {
		switch {
		case !filepath.IsAbs(s):
			p.errf("ha.key_file", "%q is not an absolute path; write one starting with /, e.g. key_file = \"/etc/govs/ha.key\"", s)
		default:
			if msg := keyFileProblem(s, p.opts.SkipFileChecks); msg != "" {
				p.errf("ha.key_file", "%s", msg)
			} else {
				h.KeyFile = filepath.Clean(s)
			}
		}
	}

	h.AdvertInterval = p.duration("ha.advert_interval", raw.AdvertInterval, DefaultHAAdvertInterval)
	if h.AdvertInterval < minHAAdvertInterval || h.AdvertInterval > maxHAAdvertInterval {
		p.errf("ha.advert_interval", "%v is out of range; write a duration from %v to %v (default %v)", h.AdvertInterval, minHAAdvertInterval, maxHAAdvertInterval, DefaultHAAdvertInterval)
	}

	h.DeadAfter = DefaultHADeadAfter
	switch v := raw.DeadAfter.(type) {
	case nil:
	case int64:
		if v < 2 || v > 255 {
			p.errf("ha.dead_after", "%d is out of range; write a number of advert intervals from 2 to 255 (at least 2, so one lost heartbeat moves nothing; default %d)", v, DefaultHADeadAfter)
		} else {
			h.DeadAfter = int(v)
		}
	default:
		p.errf("ha.dead_after", "is %s; write an integer from 2 to 255, e.g. dead_after = %d", typeName(v), DefaultHADeadAfter)
	}

	switch v := raw.Preempt.(type) {
	case nil:
	case bool:
		h.Preempt = v
	default:
		p.errf("ha.preempt", "is %s; write preempt = true or false (unquoted)", typeName(v))
	}
	h.PreemptDelay = p.durationOrZero("ha.preempt_delay", raw.PreemptDelay, 0, "30s")
	h.GARPRefresh = p.durationOrZero("ha.garp_refresh", raw.GARPRefresh, DefaultHAGARPRefresh, "10s")
	if h.GARPRefresh != 0 && h.GARPRefresh < minHAGARPRefresh {
		p.errf("ha.garp_refresh", "%v is too short; write at least %v, or \"0s\" to announce only on takeover (default %v)", h.GARPRefresh, minHAGARPRefresh, DefaultHAGARPRefresh)
	}

	// The servers' own addresses: a floating address among them would be announced with the
	// active node's MAC and cut that server off.
	others := map[netip.Addr]string{}
	locals := map[netip.Addr]bool{}
	for _, vs := range c.VirtualServers {
		for _, l := range vs.LocalAddresses {
			locals[l] = true
		}
		for _, r := range vs.RealServers {
			others[r.Address.Addr()] = fmt.Sprintf("a real server of virtual server %s", vs.Address)
		}
		if vs.SorryServer.IsValid() {
			others[vs.SorryServer.Addr()] = fmt.Sprintf("the sorry server of virtual server %s", vs.Address)
		}
	}
	switch v := raw.Floating.(type) {
	case nil:
	case []any:
		seen := map[netip.Addr]int{}
		for i, e := range v {
			field := fmt.Sprintf("ha.floating[%d]", i+1)
			s, ok := e.(string)
			if !ok {
				p.errf(field, `is %s; write an IP address in quotes, e.g. "198.19.0.254"`, typeName(e))
				continue
			}
			a, err := netip.ParseAddr(s)
			switch {
			case err != nil:
				p.errf(field, "%q is not an IP address; write one without a port, e.g. \"198.19.0.254\"", s)
			case a.Zone() != "" || a.Is4In6():
				p.errf(field, "%q: write a plain IPv4 or IPv6 address (no zone, not IPv4-mapped)", s)
			case a.IsUnspecified(), a.IsMulticast(), a.IsLoopback():
				p.errf(field, "%s is %s and cannot float between nodes", a, addrKind(a))
			case vips[a]:
				p.errf(field, "%s is a virtual server address, which moves with the active node anyway; remove it here", a)
			case locals[a]:
				p.errf(field, "%s is a FullNAT local address, which moves with the active node anyway; remove it here", a)
			case h.Listen.IsValid() && a == h.Listen.Addr():
				p.errf(field, "%s is this node's listen address, which must stay on this node; float another address", a)
			case others[a] != "":
				p.errf(field, "%s is %s: the active node would announce it as its own and cut that server off; float another address", a, others[a])
			default:
				if j, dup := seen[a]; dup {
					p.errf(field, "%s is already listed as ha.floating[%d]; list each address once", a, j)
					continue
				}
				seen[a] = i + 1
				h.Floating = append(h.Floating, a)
			}
		}
	default:
		p.errf("ha.floating", `is %s; write a list of addresses, e.g. floating = ["198.19.0.254"]`, typeName(v))
	}
	if len(p.errs) == before {
		c.HA = h
	}
}

// haAddrPort parses a heartbeat address: an IP address of one node (not a wildcard, not
// multicast) and a port.
func (p *parser) haAddrPort(s string) (netip.AddrPort, string) {
	ap, msg := parseAddrPort(s, 8405)
	switch {
	case msg != "":
		return ap, msg
	case ap.Port() == 0:
		return ap, fmt.Sprintf("%q has port 0; write the port heartbeats use, e.g. %q", s, netip.AddrPortFrom(ap.Addr(), 8405).String())
	case ap.Addr().IsUnspecified(), ap.Addr().IsMulticast():
		return ap, fmt.Sprintf("%s is %s; write one address of one node, since it also names the node", ap.Addr(), addrKind(ap.Addr()))
	}
	return ap, ""
}

// durationOrZero is duration allowing "0s".
func (p *parser) durationOrZero(field string, v any, def time.Duration, example string) time.Duration {
	if v == nil {
		return def
	}
	s, ok := v.(string)
	if !ok {
		p.errf(field, "is %s; write a quoted Go duration, e.g. %q", typeName(v), example)
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		p.errf(field, "%q is not a duration; write a Go duration such as %q or \"0s\"", s, example)
		return def
	}
	if d < 0 {
		p.errf(field, "%q is negative; write a duration of zero or more, e.g. %q", s, example)
		return def
	}
	return d
}

// keyFileProblem checks the HA key file the way ha.ReadKey does when the daemon starts, so that
// `govs check-config` reports it with the line: it must exist, be a regular file readable by its
// owner only, and hold at least minHAKeyLen bytes.
func keyFileProblem(path string, skip bool) string {
	if skip {
		return ""
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Sprintf("cannot use %s: %v; create it with the same secret on every node: `head -c 32 /dev/urandom | base64 > %s; chmod 600 %s`", path, err, path, path)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Sprintf("%s is not a regular file; write the shared secret into a file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Sprintf("%s has mode %04o, so others than its owner may read the secret; run `chmod 600 %s`", path, perm, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("cannot read %s: %v", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return fmt.Sprintf("cannot read %s: %v", path, err)
	}
	if n := len(bytes.TrimRight(b, " \t\r\n")); n < minHAKeyLen {
		return fmt.Sprintf("%s holds %d bytes of key; write at least %d random bytes: `head -c 32 /dev/urandom | base64 > %s`", path, n, minHAKeyLen, path)
	}
	return ""
}

// shutdownDrain validates the top-level shutdown_drain; [ha] must be parsed already.
func (p *parser) shutdownDrain(v any, c *Config) {
	c.ShutdownDrain = DefaultShutdownDrain
	if c.HA != nil {
		c.ShutdownDrain = 0
		if v != nil {
			p.errf("shutdown_drain", "applies to a node without [ha]; an HA node hands the VIPs to a peer when it stops instead: remove shutdown_drain")
		}
		return
	}
	c.ShutdownDrain = p.durationOrZero("shutdown_drain", v, DefaultShutdownDrain, "5s")
}
