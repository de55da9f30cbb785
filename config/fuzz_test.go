package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/BurntSushi/toml"
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
	if c.Timeouts.TCP <= 0 || c.Timeouts.TCPFin <= 0 || c.Timeouts.UDP <= 0 {
		t.Fatalf("bad timeouts %+v", c.Timeouts)
	}
	keys := make(map[string]bool)
	for _, vs := range c.VirtualServers {
		if keys[vs.Key()] {
			t.Fatalf("duplicate virtual server %s", vs.Key())
		}
		keys[vs.Key()] = true
		if vs.Address.Port() == 0 || vs.Protocol.Number() == 0 || vs.Method.String() == "" ||
			!slices.Contains(ImplementedSchedulers, vs.Scheduler) || len(vs.RealServers) == 0 || vs.Line <= 0 {
			t.Fatalf("bad virtual server %+v", vs)
		}
		for _, rs := range vs.RealServers {
			if rs.Address.Port() == 0 || rs.Weight < 0 || rs.Weight > maxWeight || rs.Line <= 0 ||
				rs.Address.Addr().Is4() != vs.Address.Addr().Is4() {
				t.Fatalf("bad real server %+v in %+v", rs, vs)
			}
		}
	}
	if len(c.Summary()) != len(c.VirtualServers) {
		t.Fatalf("Summary has %d lines for %d virtual servers", len(c.Summary()), len(c.VirtualServers))
	}
}
