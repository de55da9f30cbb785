package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
)

// tcpChecker is kind tcp (a connection is accepted) and, with send or expect, kind send_expect:
// the Piranha-style check that sends a string and reads until the reply matches a regexp.
type tcpChecker struct {
	dial   DialFunc
	addr   string
	send   []byte
	expect *regexp.Regexp // nil: nothing to read
}

func (c *tcpChecker) Check(ctx context.Context) error {
	conn, err := c.dial(ctx, "tcp", c.addr)
	if err != nil {
		return describe(ctx, "connect to "+c.addr, err)
	}
	defer conn.Close()
	defer bind(ctx, conn)()
	if len(c.send) > 0 {
		if _, err := conn.Write(c.send); err != nil {
			return describe(ctx, "send to "+c.addr, err)
		}
	}
	if c.expect == nil {
		return nil
	}
	buf := make([]byte, MaxBody)
	n := 0
	for n < len(buf) {
		k, err := conn.Read(buf[n:])
		n += k
		if c.expect.Match(buf[:n]) {
			return nil
		}
		switch {
		case errors.Is(err, io.EOF):
			return fmt.Errorf("%s closed the connection; the reply %s does not match %q", c.addr, excerpt(buf[:n]), c.expect)
		case err != nil:
			return fmt.Errorf("%w; the reply so far %s does not match %q", describe(ctx, "read from "+c.addr, err), excerpt(buf[:n]), c.expect)
		}
	}
	return fmt.Errorf("the first %d bytes from %s do not match %q", MaxBody, c.addr, c.expect)
}
