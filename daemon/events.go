package daemon

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/govs/govs/internal/ratelog"
)

// The daemon's state changes (ready, reloaded or rejected, a real server up or down, a virtual
// server below its quorum or on its sorry server and back, a runtime change by govs ctl, the
// connection table full, a virtual server without a resolved real server) are logged as
// structured records through log/slog's default logger, which `govs run` sets from [log], with
// their figures as fields; a JSON log is read by field, not by parsing messages. The packages
// the daemon drives log their own state changes (HA, next hops, rx_mode) as records on the same
// logger. Everything else goes through the printf-style logf.

const (
	// limitEvery is how often a message that repeats while its cause lasts is let through.
	limitEvery = time.Minute
	// flapEvery and flapBurst bound the records of one thing that changes state (a real server's
	// health, a virtual server's quorum or sorry server): every change is logged up to flapBurst
	// in a row, then one per flapEvery, each saying how many were held back, and the last one held
	// back once the flapping stops.
	flapEvery = 30 * time.Second
	flapBurst = 6
)

// limits are the daemon's rate limits of its log records; Run flushes them every second.
type limits struct {
	once  sync.Once
	every *ratelog.Limiter // repeating problems: once per limitEvery per key
	flaps *ratelog.Limiter // state changes that can flap, by what changes
}

func (l *limits) init() {
	l.once.Do(func() {
		l.every = ratelog.New(limitEvery, 1, nil)
		l.flaps = ratelog.New(flapEvery, flapBurst, nil)
	})
}

func (l *limits) flush() {
	l.init()
	l.every.Flush()
	l.flaps.Flush()
}

// logLimited logs the message of format and args at level under key, at most once per limitEvery.
func (d *Daemon) logLimited(key string, level slog.Level, format string, args ...any) {
	d.obs.limit.init()
	d.obs.limit.every.Log(slog.Default(), key, level, fmt.Sprintf(format, args...))
}

// logChange logs a state change of what key names (say, a real server), rate-limited against
// flapping.
func (d *Daemon) logChange(key string, level slog.Level, msg string, args ...any) {
	d.obs.limit.init()
	d.obs.limit.flaps.Log(slog.Default(), key, level, msg, args...)
}
