package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/govs/govs/config"
)

// newLogger builds govs run's logger from [log]: format "text" writes the lines govs has always
// written ("govs: 2006/01/02 15:04:05.000000 message"), with a record's attributes after the
// message as key=value; "json" writes one JSON object per record (log/slog's JSONHandler). The
// returned level is the one [log] level sets; a reload changes it (levelReloader).
func newLogger(w io.Writer, c config.Log) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	setLevel(level, c.Level)
	if c.Format == config.LogFormatJSON {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})), level
	}
	return slog.New(&textHandler{mu: new(sync.Mutex), w: w, level: level}), level
}

func setLevel(v *slog.LevelVar, level string) {
	switch level {
	case config.LogLevelDebug:
		v.Set(slog.LevelDebug)
	case config.LogLevelWarn:
		v.Set(slog.LevelWarn)
	case config.LogLevelError:
		v.Set(slog.LevelError)
	default:
		v.Set(slog.LevelInfo)
	}
}

// Message prefixes the printf-style call sites use for a level, and the text format writes back.
const (
	prefixWarn  = "warning: "
	prefixError = "error: "
	prefixDebug = "debug: "
)

// printfTo adapts l to the printf-style logging the daemon and its packages take: a message
// starting with "warning: " (or "error: ", "debug: ") is logged at that level without the prefix,
// any other at info.
func printfTo(l *slog.Logger) func(format string, args ...any) {
	return func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		level := slog.LevelInfo
		for _, p := range []struct {
			prefix string
			level  slog.Level
		}{{prefixWarn, slog.LevelWarn}, {prefixError, slog.LevelError}, {prefixDebug, slog.LevelDebug}} {
			if rest, ok := strings.CutPrefix(msg, p.prefix); ok {
				msg, level = rest, p.level
				break
			}
		}
		l.Log(context.Background(), level, msg)
	}
}

// textHandler writes records as govs's classic log lines. Unlike slog's TextHandler it does not
// quote the message, so a line reads (and greps) as it did before govs logged through slog.
type textHandler struct {
	mu    *sync.Mutex // shared by the handlers derived with WithAttrs and WithGroup
	w     io.Writer
	level slog.Leveler
	attrs []byte // " key=value" of WithAttrs, formatted once
	group string // "g1.g2." of WithGroup
}

func (h *textHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *textHandler) Handle(_ context.Context, r slog.Record) error {
	buf := make([]byte, 0, 128+len(r.Message))
	buf = append(buf, "govs: "...)
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	buf = t.AppendFormat(buf, "2006/01/02 15:04:05.000000")
	buf = append(buf, ' ')
	switch {
	case r.Level >= slog.LevelError:
		buf = append(buf, prefixError...)
	case r.Level >= slog.LevelWarn:
		buf = append(buf, prefixWarn...)
	case r.Level < slog.LevelInfo:
		buf = append(buf, prefixDebug...)
	}
	buf = appendOneLine(buf, r.Message)
	buf = append(buf, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		buf = appendAttr(buf, h.group, a)
		return true
	})
	buf = append(buf, '\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.w.Write(buf)
	return err
}

// appendOneLine appends msg with its line breaks as "; ": a record is one line, which is what
// grep, journald and the prefix on every line rely on (a multi-line error reads as its lines joined).
func appendOneLine(buf []byte, msg string) []byte {
	msg = strings.TrimRight(msg, "\n")
	for {
		line, rest, more := strings.Cut(msg, "\n")
		buf = append(buf, line...)
		if !more {
			return buf
		}
		buf = append(buf, "; "...)
		msg = rest
	}
}

func (h *textHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append([]byte(nil), h.attrs...)
	for _, a := range as {
		c.attrs = appendAttr(c.attrs, h.group, a)
	}
	return &c
}

func (h *textHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.group = h.group + name + "."
	return &c
}

// appendAttr appends " key=value", quoting a value that would not read as one word.
func appendAttr(buf []byte, group string, a slog.Attr) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return buf
	}
	if a.Value.Kind() == slog.KindGroup {
		g := group
		if a.Key != "" {
			g += a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			buf = appendAttr(buf, g, ga)
		}
		return buf
	}
	buf = append(buf, ' ')
	buf = append(buf, group...)
	buf = append(buf, a.Key...)
	buf = append(buf, '=')
	var s string
	switch a.Value.Kind() {
	case slog.KindTime:
		s = a.Value.Time().Format(time.RFC3339Nano)
	default:
		s = a.Value.String()
	}
	if needsQuote(s) {
		return strconv.AppendQuote(buf, s)
	}
	return append(buf, s...)
}

func needsQuote(s string) bool {
	if s == "" {
		return true
	}
	for _, r := range s {
		if r == '"' || r == '=' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
	}
	return false
}

// levelReloader is what a SIGHUP reloads: the daemon, and the log level once the daemon applied
// the file ([log] format is restart-only; the daemon logs that a change waits for the restart).
type levelReloader struct {
	reloader
	level *slog.LevelVar
}

func (r levelReloader) Reload(cfg *config.Config) error {
	if err := r.reloader.Reload(cfg); err != nil {
		return err
	}
	setLevel(r.level, cfg.Log.Level)
	return nil
}
