package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/govs/govs/config"
)

// classicLine is the line govs has always written, which scripts and tests parse.
var classicLine = regexp.MustCompile(`^govs: \d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d{6} (.*)$`)

func TestTextLog(t *testing.T) {
	var buf bytes.Buffer
	l, _ := newLogger(&buf, config.Log{Format: "text", Level: "info"})
	logf := printfTo(l)
	logf("reloaded %s: %d virtual servers", "/etc/govs/govs.toml", 2)
	logf("warning: %v", errors.New("kernel guard: no table"))
	logf("debug: not shown at info")
	l.Info("reloaded", "file", "/etc/govs/my govs.toml", "generation", 3, "since", 10*time.Second)
	l.With("service", "tcp/198.18.0.100:80").WithGroup("rs").Warn("down", "addr", "198.19.0.11:80", "why", `said "no"`, "empty", "")
	l.Error("reload rejected, the running configuration stays: t.toml:3: x: y\nt.toml:4: z: w\n")
	want := []string{
		"reloaded /etc/govs/govs.toml: 2 virtual servers",
		"warning: kernel guard: no table",
		`reloaded file="/etc/govs/my govs.toml" generation=3 since=10s`,
		`warning: down service=tcp/198.18.0.100:80 rs.addr=198.19.0.11:80 rs.why="said \"no\"" rs.empty=""`,
		"error: reload rejected, the running configuration stays: t.toml:3: x: y; t.toml:4: z: w",
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, line := range lines {
		got := line
		if m := classicLine.FindStringSubmatch(line); m != nil {
			got = m[1]
		} else {
			t.Errorf("line %d %q is not a classic govs line", i, line)
		}
		if got != want[i] {
			t.Errorf("line %d:\n got %q\nwant %q", i, got, want[i])
		}
	}
}

func TestJSONLogAndLevels(t *testing.T) {
	var buf bytes.Buffer
	l, level := newLogger(&buf, config.Log{Format: "json", Level: "warn"})
	logf := printfTo(l)
	logf("info: dropped at warn")
	logf("warning: kept %d", 1)
	l.Info("dropped too")
	setLevel(level, "debug")
	logf("debug: now kept")
	l.Info("reloaded", "file", "/x.toml", "generation", 4)
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", line, err)
		}
		delete(m, "time")
		recs = append(recs, m)
	}
	want := []map[string]any{
		{"level": "WARN", "msg": "kept 1"},
		{"level": "DEBUG", "msg": "now kept"},
		{"level": "INFO", "msg": "reloaded", "file": "/x.toml", "generation": float64(4)},
	}
	if len(recs) != len(want) {
		t.Fatalf("records %v, want %v", recs, want)
	}
	for i := range want {
		for k, v := range want[i] {
			if recs[i][k] != v {
				t.Errorf("record %d: %s = %v, want %v (%v)", i, k, recs[i][k], v, recs[i])
			}
		}
	}
}

// TestReloadAppliesLogLevel: a reload the daemon applies sets the new [log] level; one it refuses
// leaves the level as it was.
func TestReloadAppliesLogLevel(t *testing.T) {
	_, level := newLogger(&bytes.Buffer{}, config.Log{Format: "text", Level: "info"})
	d := &fakeDaemon{}
	r := levelReloader{d, level}
	if err := r.Reload(&config.Config{Log: config.Log{Level: "debug"}}); err != nil || level.Level() != slog.LevelDebug {
		t.Fatalf("applied reload: %v, level %v; want debug", err, level.Level())
	}
	d.reloadErr = errors.New("refused")
	if err := r.Reload(&config.Config{Log: config.Log{Level: "error"}}); err == nil || level.Level() != slog.LevelDebug {
		t.Fatalf("refused reload: %v, level %v; want the error and debug kept", err, level.Level())
	}
}
