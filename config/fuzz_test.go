package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/govs/govs/sched"
)

// FuzzParse checks that Parse never panics, that what it accepts obeys the
// model's promises, and that the position index finds every key the toml
// parser found (the index is what puts line numbers on messages).
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.toml")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "f.toml", LoadOptions{InterfaceExists: func(name string) bool { return name != "missing0" }})
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("Parse error %T %v, want non-empty Errors", err, err)
			}
			if c != nil {
				t.Fatalf("Parse returned a Config and an error")
			}
			for i, e := range errs {
				if e.File != "f.toml" || e.Msg == "" {
					t.Fatalf("malformed Error %+v", e)
				}
				if i > 0 && errs[i-1].Line > e.Line {
					t.Fatalf("errors not sorted by line: %v", err)
				}
			}
		} else {
			checkModel(t, c)
		}

		// Every key toml reports must be found by the index, by its names.
		var generic map[string]any
		md, err := toml.Decode(string(data), &generic)
		if err != nil {
			return
		}
		pos := indexPositions(data)
		for _, k := range md.Keys() {
			if !slices.ContainsFunc(pos.keys, func(kp keyPos) bool { return kp.isKey && len(kp.segs) == len(k) && sameNames(kp.segs, k) }) {
				t.Fatalf("index has no position for key %q (toml keys %q)", k.String(), md.Keys())
			}
		}
	})
}

func checkModel(t *testing.T, c *Config) {
	t.Helper()
	if len(c.Dataplane.Interfaces) == 0 || c.Dataplane.Workers < 0 || c.Dataplane.Workers > maxWorkers {
		t.Fatalf("bad dataplane %+v", c.Dataplane)
	}
	if !filepath.IsAbs(c.Control.Socket) {
		t.Fatalf("control socket %q not absolute", c.Control.Socket)
	}
	to := c.Timeouts
	for _, d := range []time.Duration{to.TCP, to.TCPFin, to.UDP, to.TCPSynRecv, to.TCPSynSent, to.TCPTimeWait, to.TCPClose, to.TCPCloseWait, to.TCPLastAck} {
		if d <= 0 {
			t.Fatalf("bad timeouts %+v", c.Timeouts)
		}
	}
	ct := c.Conntrack
	if ct.MaxEntries < 1 || ct.MaxEntries > MaxConntrackEntries || (ct.FullPolicy != FullPolicyDropNew && ct.FullPolicy != FullPolicyEvictOldestIdle) {
		t.Fatalf("bad conntrack %+v", ct)
	}
	keys := make(map[string]bool)
	for _, vs := range c.VirtualServers {
		if keys[vs.Key()] {
			t.Fatalf("duplicate virtual server %s", vs.Key())
		}
		keys[vs.Key()] = true
		if vs.Protocol.Number() == 0 || vs.Method.String() == "" ||
			!slices.Contains(sched.Names(), vs.Scheduler) || len(vs.RealServers) == 0 || vs.Line <= 0 {
			t.Fatalf("bad virtual server %+v", vs)
		}
		// Whatever Parse accepts, sched must accept too.
		if _, err := sched.New(vs.Scheduler, nil, vs.SchedOptions()); err != nil {
			t.Fatalf("sched.New rejects %+v: %v", vs, err)
		}
		if len(vs.SchedulerFlags) > 0 && vs.SchedOptions().Flags == 0 {
			t.Fatalf("flags %q do not parse", vs.SchedulerFlags)
		}
		if (vs.MHTableSize != 0) != (vs.Scheduler == "mh") {
			t.Fatalf("mh table size %d with scheduler %s", vs.MHTableSize, vs.Scheduler)
		}
		maxBits := 128
		if vs.Address.Addr().Is4() {
			maxBits = 32
		}
		if vs.PersistenceTimeout < 0 || vs.PersistenceNetmask < 0 || vs.PersistenceNetmask > maxBits ||
			(vs.PersistenceTimeout == 0 && vs.PersistenceNetmask != 0) {
			t.Fatalf("bad persistence %s /%d in %+v", vs.PersistenceTimeout, vs.PersistenceNetmask, vs)
		}
		if vs.OnePacket && vs.Protocol != ProtocolUDP {
			t.Fatalf("one_packet on %s", vs.Protocol)
		}
		checkHealthModel(t, &vs)
		for _, rs := range vs.RealServers {
			if (rs.Address.Port() == 0 && vs.Address.Port() != 0) || rs.Weight < 0 || rs.Weight > maxWeight || rs.Line <= 0 ||
				rs.Address.Addr().Is4() != vs.Address.Addr().Is4() {
				t.Fatalf("bad real server %+v in %+v", rs, vs)
			}
			if rs.UpperThreshold < 0 || rs.UpperThreshold > MaxThreshold || rs.LowerThreshold < 0 || rs.LowerThreshold > rs.UpperThreshold {
				t.Fatalf("bad thresholds %+v", rs)
			}
		}
	}
	if len(c.Summary()) != len(c.VirtualServers) {
		t.Fatalf("Summary has %d lines for %d virtual servers", len(c.Summary()), len(c.VirtualServers))
	}
}

// FuzzControlSocket checks that reading the [control] socket of any file, TOML or not, never
// panics, and that what it returns is usable: an absolute path and a one-line note, or one error.
func FuzzControlSocket(f *testing.F) {
	files, err := filepath.Glob("testdata/*.toml")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(append(b, "\n[[virtual_server]\n"...))
	}
	f.Add([]byte("[control]\nsocket = \"/run/x\\\"y.sock\" # c\n[[x]\n"))
	f.Add([]byte("control . socket = '/run/x.sock\n["))
	f.Fuzz(func(t *testing.T, data []byte) {
		sock, note, err := controlSocketOf(data, "f.toml")
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) != 1 || sock != "" || note != "" {
				t.Fatalf("controlSocketOf = %q, %q, %v; want one Error and nothing else", sock, note, err)
			}
			return
		}
		if !filepath.IsAbs(sock) || strings.ContainsAny(note, "\n") {
			t.Fatalf("controlSocketOf = %q, %q; want an absolute path and a one-line note", sock, note)
		}
		if c, perr := Parse(data, "f.toml", LoadOptions{}); perr == nil && (c.Control.Socket != sock || note != "") {
			t.Fatalf("controlSocketOf = %q, %q; a valid file's [control] socket is %q", sock, note, c.Control.Socket)
		}
	})
}
