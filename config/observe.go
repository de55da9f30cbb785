package config

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Metrics is the [metrics] table: the Prometheus endpoint.
type Metrics struct {
	// Listen is the TCP address /metrics is served on, "host:port" with an IP address (or no
	// host: every address of the balancer); "" serves no metrics. DefaultMetricsListen when
	// omitted.
	Listen string
}

// DefaultMetricsListen is [metrics] listen when omitted: the loopback only, so nothing listens on
// the network unless the operator says so.
const DefaultMetricsListen = "127.0.0.1:9273"

// Log is the [log] table: how govs run writes its log (to standard error).
type Log struct {
	Format string // LogFormatText (default) or LogFormatJSON
	Level  string // LogLevelDebug, LogLevelInfo (default), LogLevelWarn or LogLevelError
}

// [log] format and level values.
const (
	LogFormatText = "text" // one line per record: time, level, message, then key=value pairs
	LogFormatJSON = "json" // one JSON object per line (log/slog's JSONHandler)

	LogLevelDebug = "debug"
	LogLevelInfo  = "info"
	LogLevelWarn  = "warn"
	LogLevelError = "error"

	DefaultLogFormat = LogFormatText
	DefaultLogLevel  = LogLevelInfo
)

var (
	logFormats = []string{LogFormatText, LogFormatJSON}
	logLevels  = []string{LogLevelDebug, LogLevelInfo, LogLevelWarn, LogLevelError}
)

type rawMetrics struct {
	Listen any `toml:"listen"`
}

type rawLog struct {
	Format any `toml:"format"`
	Level  any `toml:"level"`
}

func (p *parser) metrics(raw *rawMetrics, out *Metrics) {
	const field = "metrics.listen"
	out.Listen = DefaultMetricsListen
	if raw == nil || raw.Listen == nil {
		return
	}
	s, ok := raw.Listen.(string)
	if !ok {
		p.errf(field, "is %s; write a quoted host:port, e.g. listen = %q, or listen = \"\" to serve no metrics", typeName(raw.Listen), DefaultMetricsListen)
		return
	}
	addr, msg := metricsListen(s)
	if msg != "" {
		p.errf(field, "%s", msg)
		return
	}
	out.Listen = addr
}

// metricsListen checks a [metrics] listen value and returns it in canonical form, or what is wrong
// with it.
func metricsListen(s string) (string, string) {
	if s == "" {
		return "", ""
	}
	const how = `write an IP address and a port, e.g. "127.0.0.1:9273", "[::1]:9273" or ":9273" (every address), or "" to serve no metrics`
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", strconv.Quote(s) + " is not host:port; " + how
	}
	if host != "" {
		a, err := netip.ParseAddr(host)
		if err != nil {
			return "", strconv.Quote(host) + " is not an IP address (names are not looked up); " + how
		}
		host = a.String()
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", "port " + strconv.Quote(port) + " is not a number from 1 to 65535; " + how
	}
	return net.JoinHostPort(host, strconv.Itoa(n)), ""
}

func (p *parser) logConfig(raw *rawLog, out *Log) {
	if raw == nil {
		raw = &rawLog{}
	}
	out.Format = p.oneOf("log.format", raw.Format, logFormats, DefaultLogFormat)
	out.Level = p.oneOf("log.level", raw.Level, logLevels, DefaultLogLevel)
}

// oneOf reads a string that must be one of valid; def when v is absent (or wrong, after the error).
func (p *parser) oneOf(field string, v any, valid []string, def string) string {
	if v == nil {
		return def
	}
	s, ok := v.(string)
	if !ok {
		p.errf(field, "is %s; write one of %s (quoted)", typeName(v), quoteAll(valid))
		return def
	}
	for _, x := range valid {
		if s == x {
			return s
		}
	}
	p.errf(field, "%q is not one of %s (default %q)%s", s, quoteAll(valid), def, lowerHint(s, valid...))
	return def
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}
