package health

import (
	"context"
	"fmt"
	"regexp"
)

// udpChecker sends one datagram and waits for one that matches expect (any, when expect is nil).
// A closed port answers with ICMP port unreachable, which the connected socket reports as
// refused, so such a server is down at once rather than at the timeout.
type udpChecker struct {
	dial   DialFunc
	addr   string
	send   []byte
	expect *regexp.Regexp
}

func (c *udpChecker) Check(ctx context.Context) error {
	conn, err := c.dial(ctx, "udp", c.addr)
	if err != nil {
		return describe(ctx, "open a UDP socket to "+c.addr, err)
	}
	defer conn.Close()
	defer bind(ctx, conn)()
	if _, err := conn.Write(c.send); err != nil {
		return describe(ctx, "send to "+c.addr, err)
	}
	buf := make([]byte, MaxBody)
	var last []byte
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if last != nil {
				return fmt.Errorf("%w; the last reply %s does not match %q", describe(ctx, "read from "+c.addr, err), excerpt(last), c.expect)
			}
			return describe(ctx, "read from "+c.addr, err)
		}
		if c.expect == nil || c.expect.Match(buf[:n]) {
			return nil
		}
		// Another datagram may still come: a reply to an earlier check, or a banner.
		last = append(last[:0], buf[:n]...)
	}
}
