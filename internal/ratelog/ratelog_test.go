package ratelog

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// record is what the tests read back of a logged record.
type record struct {
	Msg        string `json:"msg"`
	Level      string `json:"level"`
	Key        string `json:"k"`
	Suppressed int    `json:"suppressed"`
}

func records(t *testing.T, buf *bytes.Buffer) []record {
	t.Helper()
	var out []record
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		out = append(out, r)
	}
	buf.Reset()
	return out
}

func TestLimiter(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	t0 := time.Unix(1000, 0)
	now := t0
	l := New(10*time.Second, 2, func() time.Time { return now })
	at := func(d time.Duration) { now = t0.Add(d) }

	type step struct {
		at     time.Duration
		key    string // "" : Flush
		msg    string
		logged bool
		want   []record // logged by this step
	}
	steps := []step{
		{0, "a", "a1", true, []record{{"a1", "INFO", "a", 0}}},
		{0, "a", "a2", true, []record{{"a2", "INFO", "a", 0}}},
		{time.Second, "a", "a3", false, nil}, // the burst is spent
		{2 * time.Second, "a", "a4", false, nil},
		{2 * time.Second, "b", "b1", true, []record{{"b1", "INFO", "b", 0}}},  // keys are independent
		{5 * time.Second, "", "", false, nil},                                 // no token yet
		{10 * time.Second, "a", "a5", true, []record{{"a5", "INFO", "a", 2}}}, // a token again: it says what it held back
		{11 * time.Second, "a", "a6", false, nil},
		{12 * time.Second, "a", "a7", false, nil},
		{15 * time.Second, "", "", false, nil},                              // not yet: half a token
		{20 * time.Second, "", "", false, []record{{"a7", "INFO", "a", 1}}}, // the last held back, and how many before it
		{21 * time.Second, "", "", false, nil},                              // nothing held
	}
	for i, s := range steps {
		at(s.at)
		if s.key == "" {
			l.Flush()
		} else if got := l.Log(log, s.key, slog.LevelInfo, s.msg, "k", s.key); got != s.logged {
			t.Errorf("step %d (%s at %v): Log = %v, want %v", i, s.msg, s.at, got, s.logged)
		}
		got := records(t, &buf)
		if len(got) != len(s.want) {
			t.Errorf("step %d (%q at %v): logged %+v, want %+v", i, s.msg, s.at, got, s.want)
			continue
		}
		for j := range got {
			if got[j] != s.want[j] {
				t.Errorf("step %d (%q at %v): logged %+v, want %+v", i, s.msg, s.at, got[j], s.want[j])
			}
		}
	}
}

// TestLimiterForgets: Flush drops the keys that are quiet with a full bucket, so a limiter keyed
// by real server does not grow with every real server a reload ever removed.
func TestLimiterForgets(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(time.Second, 1, func() time.Time { return now })
	log := slog.New(slog.DiscardHandler)
	l.Log(log, "a", slog.LevelWarn, "x")
	l.Log(log, "b", slog.LevelWarn, "x")
	l.Log(log, "b", slog.LevelWarn, "x") // held
	now = now.Add(500 * time.Millisecond)
	l.Flush()
	if len(l.keys) != 2 {
		t.Fatalf("%d keys after half a period, want 2", len(l.keys))
	}
	now = now.Add(time.Second)
	l.Flush() // logs b's held record: b spends its token
	l.Flush()
	if _, ok := l.keys["a"]; ok || len(l.keys) != 1 {
		t.Fatalf("keys %v after a quiet period, want only b (it just logged)", l.keys)
	}
	now = now.Add(time.Second)
	l.Flush()
	if len(l.keys) != 0 {
		t.Fatalf("keys %v, want none", l.keys)
	}
}

// TestLimiterArgsNotShared: adding the suppressed field never writes into the caller's slice.
func TestLimiterArgsNotShared(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	now := time.Unix(1000, 0)
	l := New(time.Second, 1, func() time.Time { return now })
	args := make([]any, 2, 4)
	args[0], args[1] = "k", "a"
	l.Log(log, "a", slog.LevelInfo, "m", args...)
	l.Log(log, "a", slog.LevelInfo, "m", args...)
	now = now.Add(time.Second)
	l.Log(log, "a", slog.LevelInfo, "m", args...)
	if ext := args[:4]; ext[2] != nil || ext[3] != nil {
		t.Errorf("the caller's args were appended to: %v", ext)
	}
	if got := records(t, &buf); len(got) != 2 || got[1].Suppressed != 1 {
		t.Errorf("logged %+v, want 2 records, the second with suppressed=1", got)
	}
}
