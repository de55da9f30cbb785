package health

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Kind is what a check does. The zero value, KindNone, is no check at all.
type Kind uint8

// The kinds of check.
const (
	KindNone       Kind = iota // no check: the server is never monitored
	KindTCP                    // a TCP connection is accepted
	KindHTTP                   // an HTTP GET answers with an expected status (and body)
	KindHTTPS                  // the same over TLS
	KindSendExpect             // over TCP: send a string, read a reply matching a regexp
	KindUDP                    // send a datagram, receive one matching a regexp
	KindDNS                    // a DNS query over UDP gets an answer with rcode NOERROR
	KindExec                   // a program exits with status 0
)

var kindNames = [...]string{"none", "tcp", "http", "https", "send_expect", "udp", "dns", "exec"}

// String returns the spelling used in the config file, e.g. "send_expect".
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// ParseKind returns the Kind spelled s, as String writes it.
func ParseKind(s string) (Kind, bool) {
	i := slices.Index(kindNames[:], s)
	if i < 0 {
		return KindNone, false
	}
	return Kind(i), true
}

// KindNames returns every kind's name, "none" first, in the order the documentation lists them.
func KindNames() []string { return slices.Clone(kindNames[:]) }

// queryTypes are the DNS record types a dns check may ask for: the ones an operator checks a
// server with, by their usual names.
var queryTypes = map[string]dnsmessage.Type{
	"A": dnsmessage.TypeA, "AAAA": dnsmessage.TypeAAAA, "NS": dnsmessage.TypeNS, "CNAME": dnsmessage.TypeCNAME,
	"SOA": dnsmessage.TypeSOA, "PTR": dnsmessage.TypePTR, "MX": dnsmessage.TypeMX, "TXT": dnsmessage.TypeTXT,
	"SRV": dnsmessage.TypeSRV,
}

// QueryTypeNames returns the DNS query types a dns check accepts, sorted.
func QueryTypeNames() []string {
	names := make([]string, 0, len(queryTypes))
	for n := range queryTypes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ValidQueryType reports whether s is one of QueryTypeNames.
func ValidQueryType(s string) bool {
	_, ok := queryTypes[s]
	return ok
}

// CanonicalQuery returns a DNS name as a query sends it, fully qualified (with its final dot),
// or why it cannot be one.
func CanonicalQuery(name string) (string, error) {
	if name == "" {
		return "", errors.New("the name is empty")
	}
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	if name != "." {
		for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
			switch {
			case label == "":
				return "", fmt.Errorf("%q has an empty label (two dots in a row)", name)
			case len(label) > 63:
				return "", fmt.Errorf("%q has a label longer than 63 bytes", name)
			}
		}
	}
	if _, err := dnsmessage.NewName(name); err != nil || len(name) > 254 {
		return "", fmt.Errorf("%q is longer than a DNS name may be (253 bytes)", name)
	}
	return name, nil
}

// Defaults of a check's timing, as HAProxy has them: a check every two seconds, two successes to
// come back, three failures to leave.
const (
	DefaultInterval = 2 * time.Second
	DefaultTimeout  = time.Second
	DefaultRise     = 2
	DefaultFall     = 3
	// DefaultQueryType is the record type a dns check asks for when none is given.
	DefaultQueryType = "A"
)

// Spec is what to check on a real server and how often. The zero Spec (KindNone) checks nothing.
type Spec struct {
	Kind     Kind
	Interval time.Duration // between the starts of two checks; > 0
	Timeout  time.Duration // for one check; > 0
	Rise     int           // consecutive successes that bring a down server up; >= 1
	Fall     int           // consecutive failures that take an up server down; >= 1
	// Port is the port to check; 0 means the real server's own port.
	Port uint16

	// http and https.
	Path         string // request path and query, starting with "/"; "" is "/"
	Host         string // Host header (and default SNI); "" is the address checked
	ExpectStatus []int  // acceptable status codes; empty: any 2xx
	ExpectBody   string // regexp the first MaxBody bytes of the body must match; "" = any body
	TLSVerify    bool   // https: verify the chain (system roots) and name; default: encrypt only
	SNI          string // https: server name sent and verified; "" is Host, else none

	// send_expect and udp.
	Send   string // bytes to send; send_expect may omit it (a server that greets first)
	Expect string // regexp the reply must match; "" = any reply (udp), or none awaited (send_expect)

	// dns.
	Query     string // name to ask for, e.g. "example.com." (CanonicalQuery)
	QueryType string // one of QueryTypeNames; "" is DefaultQueryType

	// exec.
	Command []string // argv, Command[0] an absolute path

	// Notify, when not empty, is run (argv, Notify[0] an absolute path) on every change to up or
	// down, without waiting for it; see Manager.
	Notify []string
}

// MaxBody bounds how much of a reply (HTTP body, TCP or UDP reply) a check reads and matches.
const MaxBody = 64 << 10

// Equal reports whether s and o check the same thing the same way.
func (s *Spec) Equal(o *Spec) bool {
	return s.Kind == o.Kind && s.Interval == o.Interval && s.Timeout == o.Timeout &&
		s.Rise == o.Rise && s.Fall == o.Fall && s.Port == o.Port &&
		s.Path == o.Path && s.Host == o.Host && slices.Equal(s.ExpectStatus, o.ExpectStatus) &&
		s.ExpectBody == o.ExpectBody && s.TLSVerify == o.TLSVerify && s.SNI == o.SNI &&
		s.Send == o.Send && s.Expect == o.Expect && s.Query == o.Query && s.QueryType == o.QueryType &&
		slices.Equal(s.Command, o.Command) && slices.Equal(s.Notify, o.Notify)
}

// Validate reports the first thing that makes s unusable. The config package gives operators
// finer messages; this is what NewChecker and Manager.Update rely on.
func (s *Spec) Validate() error {
	if s.Kind == KindNone || int(s.Kind) >= len(kindNames) {
		return fmt.Errorf("kind %s is not a check", s.Kind)
	}
	switch {
	case s.Interval <= 0:
		return fmt.Errorf("interval %s is not positive", s.Interval)
	case s.Timeout <= 0:
		return fmt.Errorf("timeout %s is not positive", s.Timeout)
	case s.Rise < 1 || s.Fall < 1:
		return fmt.Errorf("rise %d and fall %d must be at least 1", s.Rise, s.Fall)
	}
	if s.Path != "" && !strings.HasPrefix(s.Path, "/") {
		return fmt.Errorf("path %q does not start with /", s.Path)
	}
	for _, c := range s.ExpectStatus {
		if c < 100 || c > 599 {
			return fmt.Errorf("expect_status %d is not an HTTP status", c)
		}
	}
	for _, re := range []string{s.ExpectBody, s.Expect} {
		if _, err := regexp.Compile(re); err != nil {
			return fmt.Errorf("bad regexp: %v", err)
		}
	}
	switch s.Kind {
	case KindUDP:
		if s.Send == "" {
			return errors.New("a udp check needs send: UDP has no connection to see accepted")
		}
	case KindDNS:
		if _, err := CanonicalQuery(s.Query); err != nil {
			return fmt.Errorf("query: %v", err)
		}
		if s.QueryType != "" && !ValidQueryType(s.QueryType) {
			return fmt.Errorf("query_type %q is not one of %s", s.QueryType, strings.Join(QueryTypeNames(), ", "))
		}
	case KindExec:
		if err := checkArgv(s.Command); err != nil {
			return fmt.Errorf("command: %v", err)
		}
	}
	if len(s.Notify) > 0 {
		if err := checkArgv(s.Notify); err != nil {
			return fmt.Errorf("notify: %v", err)
		}
	}
	return nil
}

func checkArgv(argv []string) error {
	switch {
	case len(argv) == 0:
		return errors.New("is empty")
	case !filepath.IsAbs(argv[0]):
		return fmt.Errorf("%q is not an absolute path", argv[0])
	}
	return nil
}

// Target is one monitored real server of one virtual server. The same real server under two
// virtual servers is two Targets, checked separately (their checks may differ).
type Target struct {
	Service string         // the virtual server's key as govs list prints it, "tcp/198.18.0.100:80"
	Server  netip.AddrPort // the real server
}

// String returns "tcp/198.18.0.100:80 198.19.0.11:80".
func (t Target) String() string { return t.Service + " " + t.Server.String() }

func (t Target) compare(o Target) int {
	if c := strings.Compare(t.Service, o.Service); c != 0 {
		return c
	}
	return t.Server.Compare(o.Server)
}

// State is a monitored server's health.
type State uint8

// States of a monitored server.
const (
	// Unknown: not checked yet. The first result decides: one success is Up, one failure Down.
	Unknown State = iota
	Up
	Down
)

// String returns "unknown", "up" or "down".
func (s State) String() string {
	switch s {
	case Unknown:
		return "unknown"
	case Up:
		return "up"
	case Down:
		return "down"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}
