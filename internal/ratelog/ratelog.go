// Package ratelog logs records that can repeat fast (a flapping real server or neighbour, a
// failing kernel call every tick) through log/slog at a bounded rate per key, and says how many it
// held back.
//
// Each key has a token bucket: Burst records at once, then one per Every. A record that finds no
// token is held back; the next record logged under its key carries the field suppressed=N (how
// many were not logged before it). Flush logs the last held-back record of each key once a token
// is there again, so the final state of something that stopped flapping is always logged.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Limiter rate-limits records by key. Its methods are safe for concurrent use.
type Limiter struct {
	every time.Duration
	burst int
	now   func() time.Time

	mu   sync.Mutex // guards keys
	keys map[string]*bucket
}

type bucket struct {
	tokens     float64
	at         time.Time // when tokens was computed
	suppressed int       // records held back since the last one logged
	held       *held     // the last of them; nil when none
}

type held struct {
	log   *slog.Logger
	level slog.Level
	msg   string
	args  []any
}

// New returns a Limiter that lets burst records of a key through at once and then one per every.
// now is the clock (nil: time.Now).
func New(every time.Duration, burst int, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{every: every, burst: max(burst, 1), now: now, keys: map[string]*bucket{}}
}

// Log logs msg with args (slog's key-value pairs) at level on log, unless key has logged its
// burst lately, in which case the record is held back (see Flush). It reports whether it logged.
func (l *Limiter) Log(log *slog.Logger, key string, level slog.Level, msg string, args ...any) bool {
	l.mu.Lock()
	b := l.keys[key]
	now := l.now()
	if b == nil {
		b = &bucket{tokens: float64(l.burst), at: now}
		l.keys[key] = b
	}
	if !l.take(b, now) {
		b.suppressed++
		b.held = &held{log, level, msg, args}
		l.mu.Unlock()
		return false
	}
	n := b.suppressed
	b.suppressed, b.held = 0, nil
	l.mu.Unlock()
	emit(log, level, msg, args, n)
	return true
}

// Flush logs the last held-back record of every key that may log again, with how many records
// before it were not logged, and forgets keys that have been quiet for a full burst. Call it
// periodically (every second, say).
func (l *Limiter) Flush() {
	type out struct {
		h *held
		n int
	}
	var outs []out
	l.mu.Lock()
	now := l.now()
	for k, b := range l.keys {
		if b.held != nil && l.take(b, now) {
			outs = append(outs, out{b.held, b.suppressed - 1})
			b.suppressed, b.held = 0, nil
			continue
		}
		if b.held == nil {
			l.refill(b, now)
			if b.tokens >= float64(l.burst) {
				delete(l.keys, k)
			}
		}
	}
	l.mu.Unlock()
	for _, o := range outs {
		emit(o.h.log, o.h.level, o.h.msg, o.h.args, o.n)
	}
}

// refill adds the tokens earned since b.at, up to the burst.
func (l *Limiter) refill(b *bucket, now time.Time) {
	if l.every > 0 {
		b.tokens += float64(now.Sub(b.at)) / float64(l.every)
	} else {
		b.tokens = float64(l.burst)
	}
	b.tokens = min(b.tokens, float64(l.burst))
	b.at = now
}

// take takes a token from b if it has one.
func (l *Limiter) take(b *bucket, now time.Time) bool {
	l.refill(b, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func emit(log *slog.Logger, level slog.Level, msg string, args []any, suppressed int) {
	if suppressed > 0 {
		args = append(args[:len(args):len(args)], "suppressed", suppressed)
	}
	log.Log(context.Background(), level, msg, args...)
}
