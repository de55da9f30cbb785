package daemon

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	var l limiter
	t0 := time.Unix(1000, 0)
	steps := []struct {
		key  string
		at   time.Duration
		ok   bool
		held int
	}{
		{"a", 0, true, 0},
		{"a", time.Second, false, 0},
		{"b", time.Second, true, 0}, // keys are independent
		{"a", 30 * time.Second, false, 0},
		{"a", limitEvery, true, 2},
		{"a", limitEvery + time.Second, false, 0},
		{"a", 3 * limitEvery, true, 1},
		{"a", 5 * limitEvery, true, 0},
	}
	for i, s := range steps {
		ok, held := l.allow(s.key, t0.Add(s.at))
		if ok != s.ok || held != s.held {
			t.Errorf("step %d (%s at %v): allow = %v, %d; want %v, %d", i, s.key, s.at, ok, held, s.ok, s.held)
		}
	}
}
