package health

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsChecker asks one question over UDP, as keepalived's DNS_CHECK does: the server is up when an
// answer to that question (same ID, same question) comes back with rcode NOERROR, whether or not
// it holds records. Answers to other questions, such as late ones to an earlier check, are
// skipped. A truncated answer counts: the server answered.
type dnsChecker struct {
	dial  DialFunc
	addr  string
	name  dnsmessage.Name
	qtype dnsmessage.Type
}

func newDNSChecker(spec Spec, addr netip.AddrPort, dial DialFunc) (*dnsChecker, error) {
	q, err := CanonicalQuery(spec.Query)
	if err != nil {
		return nil, fmt.Errorf("query: %v", err)
	}
	name, err := dnsmessage.NewName(q)
	if err != nil {
		return nil, fmt.Errorf("query %q: %v", q, err)
	}
	qt := spec.QueryType
	if qt == "" {
		qt = DefaultQueryType
	}
	return &dnsChecker{dial: dial, addr: addr.String(), name: name, qtype: queryTypes[qt]}, nil
}

func (c *dnsChecker) question() dnsmessage.Question {
	return dnsmessage.Question{Name: c.name, Type: c.qtype, Class: dnsmessage.ClassINET}
}

// query builds the message: one question, recursion desired (a resolver is checked as it is
// used; an authoritative server ignores the bit).
func (c *dnsChecker) query(id uint16) ([]byte, error) {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), dnsmessage.Header{ID: id, RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(c.question()); err != nil {
		return nil, err
	}
	return b.Finish()
}

func (c *dnsChecker) Check(ctx context.Context) error {
	id := uint16(rand.Uint32())
	msg, err := c.query(id)
	if err != nil {
		return fmt.Errorf("build the DNS query: %v", err)
	}
	conn, err := c.dial(ctx, "udp", c.addr)
	if err != nil {
		return describe(ctx, "open a UDP socket to "+c.addr, err)
	}
	defer conn.Close()
	defer bind(ctx, conn)()
	if _, err := conn.Write(msg); err != nil {
		return describe(ctx, "send the DNS query to "+c.addr, err)
	}
	buf := make([]byte, 65535)
	what := fmt.Sprintf("DNS %s %s at %s", c.qtype.String()[len("Type"):], c.name, c.addr)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return describe(ctx, what, err)
		}
		ok, rcode := c.answers(buf[:n], id)
		if !ok {
			continue
		}
		if rcode != dnsmessage.RCodeSuccess {
			return fmt.Errorf("%s: answer %s, want NOERROR", what, rcodeName(rcode))
		}
		return nil
	}
}

// answers reports whether b is an answer to this checker's query id, and its rcode.
func (c *dnsChecker) answers(b []byte, id uint16) (bool, dnsmessage.RCode) {
	var p dnsmessage.Parser
	h, err := p.Start(b)
	if err != nil || h.ID != id || !h.Response {
		return false, 0
	}
	q, err := p.Question()
	want := c.question()
	if err != nil || q.Type != want.Type || q.Class != want.Class || !strings.EqualFold(q.Name.String(), want.Name.String()) {
		return false, 0
	}
	return true, h.RCode
}

// rcodeName spells an rcode as dig and server logs do.
func rcodeName(rc dnsmessage.RCode) string {
	switch rc {
	case dnsmessage.RCodeSuccess:
		return "NOERROR"
	case dnsmessage.RCodeFormatError:
		return "FORMERR"
	case dnsmessage.RCodeServerFailure:
		return "SERVFAIL"
	case dnsmessage.RCodeNameError:
		return "NXDOMAIN"
	case dnsmessage.RCodeNotImplemented:
		return "NOTIMP"
	case dnsmessage.RCodeRefused:
		return "REFUSED"
	}
	return "rcode " + strconv.Itoa(int(rc))
}
