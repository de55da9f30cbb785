package daemon

import (
	"sync"
	"time"
)

// The daemon's state changes (ready, reloaded, connection table full, a virtual server without
// a resolved real server) are logged as structured records through log/slog's default logger,
// which `govs run` sets from [log], with their figures as attributes; a JSON log is read by field,
// not by parsing messages. Everything else goes through the printf-style logf, as the packages
// the daemon drives (data plane, resolver, announcers) do.

// limitEvery is how often a message that repeats while its cause lasts is let through.
const limitEvery = time.Minute

// limiter lets a message that can repeat every tick (a failing kernel call, say) through at most
// once per limitEvery for each key, and tells how many it held back in between. Its zero value is
// ready to use.
type limiter struct {
	mu   sync.Mutex
	last map[string]time.Time
	held map[string]int
}

// allow reports whether the message under key may be logged at now, and how many were held back
// since the last one logged.
func (l *limiter) allow(key string, now time.Time) (ok bool, held int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last, l.held = map[string]time.Time{}, map[string]int{}
	}
	if last, seen := l.last[key]; seen && now.Sub(last) < limitEvery {
		l.held[key]++
		return false, 0
	}
	held = l.held[key]
	l.last[key], l.held[key] = now, 0
	return true, held
}

// logLimited logs format under key through d.logf, at most once per limitEvery.
func (d *Daemon) logLimited(key, format string, args ...any) {
	ok, held := d.obs.limit.allow(key, time.Now())
	if !ok {
		return
	}
	if held > 0 {
		format += " (%d more like it in the last %v not logged)"
		args = append(args, held, limitEvery)
	}
	d.logf(format, args...)
}
