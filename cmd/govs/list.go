package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/govs/govs/control"
)

// printListStats prints each service's and real server's traffic counts, as `ipvsadm -Ln --stats
// --exact` does.
func printListStats(w io.Writer, st *control.Status) {
	fmt.Fprintf(w, "IP Virtual Server govs %s\n", st.Version)
	rows := [][]string{{"Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"}, {"  -> RemoteAddress:Port"}}
	row := func(name string, s control.TrafficStats) []string {
		return []string{name, fmt.Sprint(s.Conns), fmt.Sprint(s.InPkts), fmt.Sprint(s.OutPkts), fmt.Sprint(s.InBytes), fmt.Sprint(s.OutBytes)}
	}
	for _, vs := range st.VirtualServers {
		rows = append(rows, row(serviceLine(vs), vs.Stats))
		for _, rs := range vs.RealServers {
			rows = append(rows, row("  -> "+rs.Address, rs.Stats))
		}
	}
	printTable(w, rows)
}

// printListRate prints each service's and real server's rates, as `ipvsadm -Ln --rate` does.
func printListRate(w io.Writer, st *control.Status) {
	fmt.Fprintf(w, "IP Virtual Server govs %s\n", st.Version)
	rows := [][]string{{"Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"}, {"  -> RemoteAddress:Port"}}
	row := func(name string, r control.TrafficRate) []string {
		f := func(v float64) string { return fmt.Sprintf("%.0f", v) }
		return []string{name, f(r.CPS), f(r.InPPS), f(r.OutPPS), f(r.InBPS), f(r.OutBPS)}
	}
	for _, vs := range st.VirtualServers {
		rows = append(rows, row(serviceLine(vs), vs.Rate))
		for _, rs := range vs.RealServers {
			rows = append(rows, row("  -> "+rs.Address, rs.Rate))
		}
	}
	printTable(w, rows)
}

// printTable prints rows with the first column aligned left, the others right.
func printTable(w io.Writer, rows [][]string) {
	var width []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], len(c))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			if i == 0 {
				fmt.Fprintf(&b, "%-*s", width[0], c)
			} else {
				fmt.Fprintf(&b, " %*s", width[i], c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// serviceLine is a virtual server's name in the listings: "TCP  198.18.0.100:80".
func serviceLine(vs control.VirtualServer) string {
	return fmt.Sprintf("%-4s %s", strings.ToUpper(vs.Protocol), vs.Address)
}

// realNote says, after a real server's line in `govs list`, what `govs ctl` changed about it.
func realNote(rs control.RealServer, overrides []control.Override, vs control.VirtualServer) string {
	var notes []string
	for _, o := range overrides {
		if o.Service == vs.Protocol+"/"+vs.Address && o.Real == rs.Address && o.Weight != nil {
			notes = append(notes, fmt.Sprintf("weight set by govs ctl (file: %d)", o.ConfiguredWeight))
		}
	}
	if rs.Disabled {
		notes = append(notes, "disabled by govs ctl")
	}
	if len(notes) == 0 {
		return ""
	}
	return "  # " + strings.Join(notes, ", ")
}

// listConns runs `govs list -conns`: the connection entries like `ipvsadm -Lnc`.
func listConns(sock string, args control.ConnsArgs, asJSON bool) int {
	ctx, cancel := context.WithTimeout(context.Background(), control.CommandTimeout+10*time.Second)
	defer cancel()
	if asJSON {
		b, err := control.Query(ctx, sock, control.CmdConns+" "+mustJSON(args))
		if err == nil {
			err = answerError(b)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "govs list:", err)
			return 1
		}
		os.Stdout.Write(b)
		return 0
	}
	var l control.ConnList
	if err := control.Call(ctx, sock, control.CmdConns, args, &l); err != nil {
		fmt.Fprintln(os.Stderr, "govs list:", err)
		return 1
	}
	printConns(os.Stdout, &l)
	return 0
}

// printConns prints connection entries as `ipvsadm -Lnc` does, and how many more match.
func printConns(w io.Writer, l *control.ConnList) {
	fmt.Fprintln(w, "IPVS connection entries")
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	// FullNAT connections have a fourth endpoint, the local one the real server sees (DPVS's
	// ipvsadm -lnc prints it too): its column appears when one is listed.
	local := slices.ContainsFunc(l.Conns, func(c control.Conn) bool { return c.Local != "" })
	if local {
		fmt.Fprintln(tw, "pro\texpire\tstate\tsource\tvirtual\tlocal\tdestination")
	} else {
		fmt.Fprintln(tw, "pro\texpire\tstate\tsource\tvirtual\tdestination")
	}
	for _, c := range l.Conns {
		s := int(c.ExpireSeconds)
		if local {
			fmt.Fprintf(tw, "%s\t%02d:%02d\t%s\t%s\t%s\t%s\t%s\n", strings.ToUpper(c.Protocol), s/60, s%60, c.State, c.Client, c.Virtual, c.Local, c.Real)
			continue
		}
		fmt.Fprintf(tw, "%s\t%02d:%02d\t%s\t%s\t%s\t%s\n", strings.ToUpper(c.Protocol), s/60, s%60, c.State, c.Client, c.Virtual, c.Real)
	}
	tw.Flush()
	if more := l.Matched - len(l.Conns); more > 0 {
		fmt.Fprintf(w, "... and %d more %s; raise -max (at most 100000) or filter with -service, -real or -client\n", more, plural(int64(more), "connection"))
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // the argument types marshal always
	}
	return string(b)
}

// answerError returns the error in a raw answer, if it is one.
func answerError(b []byte) error {
	var e struct {
		Error *string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != nil {
		return fmt.Errorf("%s", *e.Error)
	}
	return nil
}

// printOverrides says which runtime changes are in force, for `govs stats`.
func printOverrides(w io.Writer, ovs []control.Override, now time.Time) {
	if len(ovs) == 0 {
		fmt.Fprintln(w, "runtime overrides: none")
		return
	}
	fmt.Fprintf(w, "runtime overrides (govs ctl; in force until the next reload of the file): %d\n", len(ovs))
	for _, o := range ovs {
		var what []string
		if o.Weight != nil {
			what = append(what, fmt.Sprintf("weight %d (file: %d)", *o.Weight, o.ConfiguredWeight))
		}
		if o.Disabled {
			what = append(what, "disabled")
		}
		fmt.Fprintf(w, "  %s %s: %s, since %s (%s ago)\n", o.Service, o.Real, strings.Join(what, ", "),
			o.Since.Format(time.RFC3339), now.Sub(o.Since).Round(time.Second))
	}
}
