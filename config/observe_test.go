package config

import (
	"strings"
	"testing"
)

func TestMetricsListen(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{"", DefaultMetricsListen},
		{"[metrics]\n", DefaultMetricsListen},
		{"[metrics]\nlisten = \"\"\n", ""},
		{"[metrics]\nlisten = \"127.0.0.1:9100\"\n", "127.0.0.1:9100"},
		{"[metrics]\nlisten = \":9273\"\n", ":9273"},
		{"[metrics]\nlisten = \"[2001:2:0::1]:9273\"\n", "[2001:2::1]:9273"},
		{"metrics.listen = \"198.18.0.1:80\"\n", "198.18.0.1:80"},
	} {
		c, err := Parse([]byte(file(tt.src)), "t.toml", LoadOptions{})
		if err != nil {
			t.Errorf("%q: %v", tt.src, err)
			continue
		}
		if c.Metrics.Listen != tt.want {
			t.Errorf("%q: listen %q, want %q", tt.src, c.Metrics.Listen, tt.want)
		}
	}
}

func TestLogTable(t *testing.T) {
	c, err := Parse([]byte(dp+"[log]\nformat = \"json\"\nlevel = \"warn\"\n"), "t.toml", LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Log != (Log{Format: "json", Level: "warn"}) {
		t.Errorf("log %+v", c.Log)
	}
	c, err = Parse([]byte(dp), "t.toml", LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Log != (Log{Format: "text", Level: "info"}) {
		t.Errorf("default log %+v", c.Log)
	}
	c, err = Parse([]byte(dp+"[log]\nconnections = \"/var/log/govs/conns.log\"\nconnections_rate = 500\n"), "t.toml", LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Log{Format: "text", Level: "info", Connections: "/var/log/govs/conns.log", ConnectionsRate: 500}); c.Log != want {
		t.Errorf("connection log %+v, want %+v", c.Log, want)
	}
	c, err = Parse([]byte(dp+"[log]\nconnections = \"/var/log/govs//conns.log\"\n"), "t.toml", LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Log{Format: "text", Level: "info", Connections: "/var/log/govs/conns.log", ConnectionsRate: DefaultConnectionsRate}); c.Log != want {
		t.Errorf("connection log without a rate %+v, want %+v", c.Log, want)
	}
}

// TestObserveErrors: each wrong value is reported with file:line and field, and says what to write.
func TestObserveErrors(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{"[metrics]\nlisten = 9273\n",
			`t.toml:4: metrics.listen: is an integer; write a quoted host:port, e.g. listen = "127.0.0.1:9273", or listen = "" to serve no metrics`},
		{"[metrics]\nlisten = \"9273\"\n",
			`t.toml:4: metrics.listen: "9273" is not host:port; write an IP address and a port`},
		{"[metrics]\nlisten = \"localhost:9273\"\n",
			`t.toml:4: metrics.listen: "localhost" is not an IP address (names are not looked up)`},
		{"[metrics]\nlisten = \"127.0.0.1:0\"\n",
			`t.toml:4: metrics.listen: port "0" is not a number from 1 to 65535`},
		{"[metrics]\nlisten = \"127.0.0.1:http\"\n",
			`t.toml:4: metrics.listen: port "http" is not a number from 1 to 65535`},
		{"[metrics]\nlisten = \"127.0.0.1:65536\"\n",
			`t.toml:4: metrics.listen: port "65536" is not a number from 1 to 65535`},
		{"[metrics]\nlisen = \"127.0.0.1:9273\"\n",
			`t.toml:4: metrics.lisen: unknown key; valid keys in [metrics] are listen (did you mean listen?)`},
		{"metrics = \"127.0.0.1:9273\"\n",
			`t.toml:1: metrics: is a string but must be a table; write [metrics] on a line of its own, followed by its keys`},
		{"[log]\nformat = \"logfmt\"\n",
			`t.toml:4: log.format: "logfmt" is not one of "text", "json" (default "text")`},
		{"[log]\nlevel = \"INFO\"\n",
			`t.toml:4: log.level: "INFO" is not one of "debug", "info", "warn", "error" (default "info") (names are lower case: "info")`},
		{"[log]\nlevel = 1\n",
			`t.toml:4: log.level: is an integer; write one of "debug", "info", "warn", "error" (quoted)`},
		{"[log]\nlevels = \"info\"\n",
			`t.toml:4: log.levels: unknown key; valid keys in [log] are format, level, connections, connections_rate (did you mean level?)`},
		{"[log]\nconnections = 1\n",
			`t.toml:4: log.connections: is an integer; write the connection log's file as a quoted path, e.g. connections = "/var/log/govs/connections.log", or remove the key to log no connections`},
		{"[log]\nconnections = \"conns.log\"\n",
			`t.toml:4: log.connections: "conns.log" is not an absolute path; write one starting with /, e.g. connections = "/var/log/govs/connections.log"`},
		{"[log]\nconnections = \"/tmp/c.log\"\nconnections_rate = 0\n",
			`t.toml:5: log.connections_rate: 0 is out of range; write the most connection-log lines per second, from 1 to 1000000 (default 10000)`},
		{"[log]\nconnections = \"/tmp/c.log\"\nconnections_rate = \"fast\"\n",
			`t.toml:5: log.connections_rate: is a string; write an integer number of lines per second, from 1 to 1000000 (default 10000)`},
		{"[log]\nconnections_rate = 100\n",
			`t.toml:4: log.connections_rate: needs connections: without a connection log file there are no lines to limit; add connections = "FILE", or remove connections_rate`},
		{"[log]\nconnections = \"\"\nconnections_rate = 100\n",
			`t.toml:5: log.connections_rate: needs connections: without a connection log file there are no lines to limit; add connections = "FILE", or remove connections_rate`},
	} {
		_, err := Parse([]byte(file(tt.src)), "t.toml", LoadOptions{})
		if err == nil {
			t.Errorf("%q: accepted", tt.src)
			continue
		}
		if !strings.HasPrefix(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q:\n got %s\nwant %s...", tt.src, err, tt.want)
		}
	}
}

// file puts src after the [dataplane] table, or before it when src starts with top-level keys.
func file(src string) string {
	if src == "" || strings.HasPrefix(src, "[") {
		return dp + src
	}
	return src + dp
}
