package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/govs/govs/control"
)

const ctlSynopsis = `ctl [-control SOCK | -config FILE] OPERATION ARGS
  weight SERVICE REAL N      set a real server's weight (0: no new connections)
  drain [-timeout D] SERVICE REAL
                             weight 0, then wait, showing progress, until its connections end
  disable SERVICE REAL       no new connections at all (persistent clients' included); established ones go on
  enable SERVICE REAL        undo disable
  zero                       zero the counters of govs stats and govs list -stats
  reload                     reload the configuration file, as SIGHUP does

SERVICE is written as govs stats and the logs name it (tcp/198.18.0.100:80, udp/[2001:2::100]:53)
or as govs list prints it ("TCP  198.18.0.100:80"), REAL as 198.19.0.11:80 or [2001:2::11]:80.
A change lasts until the next reload of the file, which drops it (govs stats lists the changes in
force); it is this node's own: under [ha], make it on every node.`

// ctlPoll is how often `govs ctl drain` looks at the real server's connections.
var ctlPoll = time.Second

func cmdCtl(args []string) int {
	fs := newFlags("ctl", ctlSynopsis, `  govs ctl weight tcp/198.18.0.100:80 198.19.0.11:80 5
  govs ctl -control /run/govs/govs.sock drain -timeout 10m tcp/198.18.0.100:80 198.19.0.11:80
  govs ctl disable udp/[2001:2::100]:53 [2001:2::11]:53
  govs ctl reload
`)
	sockPath := controlFlags(fs)
	timeout := fs.Duration("timeout", 0, "drain: give up waiting after this long (0: wait until the connections end)")
	// Flags may come before and after the operation and its arguments.
	var pos []string
	for {
		if ok, code := parse(fs, args); !ok {
			return code
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	usage := func(msg string) int {
		fmt.Fprintf(os.Stderr, "govs ctl: %s (try `govs ctl -h`)\n", msg)
		return 2
	}
	if len(pos) == 0 {
		return usage("name an operation: weight, drain, enable, disable, zero or reload")
	}
	op, rest := pos[0], pos[1:]
	want := map[string]int{control.CmdWeight: 3, control.CmdDrain: 2, control.CmdEnable: 2, control.CmdDisable: 2,
		control.CmdZero: 0, control.CmdReload: 0}
	n, known := want[op]
	switch {
	case !known:
		return usage(fmt.Sprintf("unknown operation %q; use weight, drain, enable, disable, zero or reload", op))
	case len(rest) != n && op == control.CmdWeight:
		return usage("weight takes SERVICE REAL N, e.g. govs ctl weight tcp/198.18.0.100:80 198.19.0.11:80 5")
	case len(rest) != n && n == 0:
		return usage(op + " takes no arguments")
	case len(rest) != n:
		return usage(fmt.Sprintf("%s takes SERVICE REAL, e.g. govs ctl %s tcp/198.18.0.100:80 198.19.0.11:80", op, op))
	}
	if *timeout != 0 && op != control.CmdDrain {
		return usage("-timeout is for drain")
	}
	var a any
	if n >= 2 {
		ra := control.RealArgs{Service: rest[0], Real: rest[1]}
		if op == control.CmdWeight {
			w, err := strconv.Atoi(rest[2])
			if err != nil {
				return usage(fmt.Sprintf("weight %q is not an integer; write a weight from 0 to 65535", rest[2]))
			}
			ra.Weight = &w
		}
		a = ra
	}
	sock, err := sockPath()
	if err != nil {
		fmt.Fprintln(os.Stderr, "govs ctl:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), control.CommandTimeout+10*time.Second)
	defer cancel()
	var res control.CtlResult
	if err := control.Call(ctx, sock, op, a, &res); err != nil {
		fmt.Fprintf(os.Stderr, "govs ctl %s: %v\n", op, err)
		return 1
	}
	fmt.Println(res.Message)
	if op != control.CmdDrain {
		return 0
	}
	if res.Override == nil {
		fmt.Fprintln(os.Stderr, "govs ctl drain: the running govs did not say which real server it drains; is it older than this client?")
		return 1
	}
	return drainWait(os.Stdout, os.Stderr, sock, res.Override.Service, res.Override.Real, *timeout)
}

// drainWait waits until real server real of service has no connections left, printing their
// number as it falls, or until timeout (0: no limit).
func drainWait(out, errw io.Writer, sock, service, real string, timeout time.Duration) int {
	start := time.Now()
	last, lastShown := int64(-1), time.Time{}
	for {
		rs, err := findListed(sock, service, real)
		if err != nil {
			fmt.Fprintf(errw, "govs ctl drain: %v\n", err)
			return 1
		}
		left := rs.ActiveConnections + rs.InactiveConnections
		if left == 0 {
			fmt.Fprintf(out, "drained: %s %s has no connections left; its weight stays 0 until `govs ctl weight` or the next reload of the file\n", service, real)
			return 0
		}
		if rs.ActiveConnections == 0 {
			// Closed TCP connections wait out TIME_WAIT (2 minutes by default) as inactive
			// entries: they carry nothing, and the drain is over.
			closed, err := onlyClosed(sock, service, real, left)
			if err != nil {
				fmt.Fprintf(errw, "govs ctl drain: %v\n", err)
				return 1
			}
			if closed > 0 {
				fmt.Fprintf(out, "drained: %s %s has no connections left but %s in TIME_WAIT or CLOSE, which carry nothing and expire by themselves; its weight stays 0 until `govs ctl weight` or the next reload of the file\n",
					service, real, connections(closed))
				return 0
			}
		}
		if rs.Weight != 0 {
			fmt.Fprintf(errw, "govs ctl drain: %s %s has weight %d again (govs ctl weight, or a reload of the file ended the drain); no longer waiting, %s left\n",
				service, real, rs.Weight, connections(left))
			return 1
		}
		now := time.Now()
		if left != last || now.Sub(lastShown) >= 10*time.Second {
			fmt.Fprintf(out, "  %s: %s left (%d active, %d inactive)\n", now.Sub(start).Round(time.Second), connections(left),
				rs.ActiveConnections, rs.InactiveConnections)
			last, lastShown = left, now
		}
		if timeout > 0 && now.Sub(start) >= timeout {
			fmt.Fprintf(errw, "govs ctl drain: %s %s still has %s after %v; its weight stays 0; wait longer (-timeout) or let them end\n",
				service, real, connections(left), timeout)
			return 1
		}
		time.Sleep(ctlPoll)
	}
}

// connections is "1 connection" or "N connections".
func connections(n int64) string { return fmt.Sprintf("%d %s", n, plural(n, "connection")) }

// plural is word for one, with an s for any other count.
func plural(n int64, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// onlyClosed returns how many connections real server real of service has when all of them are
// closed TCP connections (TIME_WAIT, CLOSE), else 0 (persistence templates aside).
func onlyClosed(sock, service, real string, count int64) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), control.CommandTimeout+10*time.Second)
	defer cancel()
	var l control.ConnList
	// As many as it has, and a few that arrived since: not the whole table every second.
	args := control.ConnsArgs{Service: service, Real: real, Max: int(min(count+16, control.MaxConnsMax))}
	if err := control.Call(ctx, sock, control.CmdConns, args, &l); err != nil {
		return 0, err
	}
	if l.Matched > len(l.Conns) {
		return 0, nil // too many to tell
	}
	var closed int64
	for _, c := range l.Conns {
		switch {
		case c.Template:
		case c.State == "TIME_WAIT" || c.State == "CLOSE":
			closed++
		default:
			return 0, nil
		}
	}
	return closed, nil
}

// errNotListed: the real server being drained is no longer in the listing.
var errNotListed = errors.New("no longer listed")

// findListed returns real server real of service in the running govs's listing.
func findListed(sock, service, real string) (*control.RealServer, error) {
	st, err := queryStatus(func() (string, error) { return sock, nil })
	if err != nil {
		return nil, err
	}
	for _, vs := range st.VirtualServers {
		if vs.Protocol+"/"+vs.Address != service {
			continue
		}
		for i := range vs.RealServers {
			if vs.RealServers[i].Address == real {
				return &vs.RealServers[i], nil
			}
		}
	}
	return nil, fmt.Errorf("%s %s is %w (a reload of the file removed it: its connections drain as a removed real server's)", service, real, errNotListed)
}
