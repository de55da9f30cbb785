package config

import (
	"net"
	"net/netip"
	"path/filepath"
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
	// Connections is the connection log's file, "" (default) for none: one line per connection
	// created and expired.
	Connections string
	// ConnectionsRate is the most connection-log lines written per second (default
	// DefaultConnectionsRate; 0 without Connections); the excess is counted
	// (connlog_rate_limited), not written.
	ConnectionsRate int
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

	DefaultConnectionsRate = 10000     // [log] connections_rate: lines per second
	MaxConnectionsRate     = 1_000_000 // its largest value
)

var (
	logFormats = []string{LogFormatText, LogFormatJSON}
	logLevels  = []string{LogLevelDebug, LogLevelInfo, LogLevelWarn, LogLevelError}
)

type rawMetrics struct {
	Listen any `toml:"listen"`
}

type rawLog struct {
	Format          any `toml:"format"`
	Level           any `toml:"level"`
	Connections     any `toml:"connections"`
	ConnectionsRate any `toml:"connections_rate"`
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
	const example = `connections = "/var/log/govs/connections.log"`
	switch s, ok := raw.Connections.(string); {
	case raw.Connections == nil || s == "" && ok:
	case !ok:
		p.errf("log.connections", "is %s; write the connection log's file as a quoted path, e.g. %s, or remove the key to log no connections", typeName(raw.Connections), example)
	case !filepath.IsAbs(s):
		p.errf("log.connections", "%q is not an absolute path; write one starting with /, e.g. %s", s, example)
	default:
		out.Connections = filepath.Clean(s)
	}
	if out.Connections != "" {
		out.ConnectionsRate = DefaultConnectionsRate
	}
	switch v := raw.ConnectionsRate.(type) {
	case nil:
	case int64:
		if v < 1 || v > MaxConnectionsRate {
			p.errf("log.connections_rate", "%d is out of range; write the most connection-log lines per second, from 1 to %d (default %d)", v, MaxConnectionsRate, DefaultConnectionsRate)
			break
		}
		out.ConnectionsRate = int(v)
	default:
		p.errf("log.connections_rate", "is %s; write an integer number of lines per second, from 1 to %d (default %d)", typeName(v), MaxConnectionsRate, DefaultConnectionsRate)
	}
	if raw.ConnectionsRate != nil && out.Connections == "" && (raw.Connections == nil || raw.Connections == "") {
		p.errf("log.connections_rate", "needs connections: without a connection log file there are no lines to limit; add connections = \"FILE\", or remove connections_rate")
	}
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
