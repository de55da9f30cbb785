package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"syscall"
	"time"
)

// Checker runs one kind of check against one real server.
type Checker interface {
	// Check checks once and returns nil when the server is up, else why not in one line. It
	// returns when ctx ends at the latest (the Manager gives it Spec.Timeout).
	Check(ctx context.Context) error
}

// DialFunc opens a connection the way net.Dialer.DialContext does; network is "tcp" or "udp".
// Checks make every connection through it, so they leave from whatever network stack it dials
// in: the daemon's own by default.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

func defaultDial(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	// MPTCP would open subflows the real server may not expect; a check is one plain connection.
	d.SetMultipathTCP(false)
	return d.DialContext(ctx, network, address)
}

// NewChecker returns the Checker spec describes for target. dial nil is net.Dialer's.
func NewChecker(spec Spec, target Target, dial DialFunc) (Checker, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if dial == nil {
		dial = defaultDial
	}
	port := spec.Port
	if port == 0 {
		port = target.Server.Port()
	}
	addr := netip.AddrPortFrom(target.Server.Addr(), port)
	if port == 0 && spec.Kind != KindExec {
		return nil, fmt.Errorf("real server %s has port 0 (all ports): the check needs a port", target.Server)
	}
	expect, _ := regexp.Compile(spec.Expect) // Validate compiled it
	if spec.Expect == "" {
		expect = nil
	}
	switch spec.Kind {
	case KindTCP:
		return &tcpChecker{dial: dial, addr: addr.String()}, nil
	case KindSendExpect:
		return &tcpChecker{dial: dial, addr: addr.String(), send: []byte(spec.Send), expect: expect}, nil
	case KindHTTP, KindHTTPS:
		return newHTTPChecker(spec, addr, dial), nil
	case KindUDP:
		return &udpChecker{dial: dial, addr: addr.String(), send: []byte(spec.Send), expect: expect}, nil
	case KindDNS:
		return newDNSChecker(spec, addr, dial)
	case KindExec:
		return newExecChecker(spec, target, addr), nil
	}
	return nil, fmt.Errorf("kind %s is not a check", spec.Kind)
}

// bind makes conn's reads and writes end when ctx does: at its deadline, and at once when it is
// cancelled (the Manager closing). Call the returned function when done with conn.
func bind(ctx context.Context, conn net.Conn) (release func() bool) {
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	return context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
}

// describe turns a failed network operation into one line that says what an operator looks for
// first: refused, unreachable or no answer in time.
func describe(ctx context.Context, what string, err error) error {
	var ne net.Error
	switch {
	case ctx.Err() == context.DeadlineExceeded || errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%s: no answer in time", what)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%s: connection refused", what)
	}
	// The errno says it all ("connection reset by peer", "no route to host"); the net.OpError
	// around it would repeat the addresses.
	return fmt.Errorf("%s: %v", what, unwrapSyscall(err))
}

func unwrapSyscall(err error) error {
	var se syscall.Errno
	if errors.As(err, &se) {
		return se
	}
	return err
}

// excerpt quotes the start of a reply for a message.
func excerpt(b []byte) string {
	const max = 64
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "..."
	}
	return strconv.Quote(string(b))
}
