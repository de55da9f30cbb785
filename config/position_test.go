package config

import (
	"testing"
)

func TestIndexPositions(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want map[string]int
	}{
		{
			name: "comments and blank lines",
			src:  "# head\n\n[dataplane] # the plane\n\n  interfaces = [\"l0\"] # [not.a.table]\n",
			want: map[string]int{"dataplane": 3, "dataplane.interfaces": 5, "dataplane.interfaces[1]": 5},
		},
		{
			name: "arrays of tables count per parent",
			src: "[[virtual_server]]\n[[virtual_server.real_server]]\n[[virtual_server.real_server]]\n" +
				"[[virtual_server]]\n[[virtual_server.real_server]]\nweight = 1\n",
			want: map[string]int{
				"virtual_server":                          1,
				"virtual_server[1]":                       1,
				"virtual_server[1].real_server":           2,
				"virtual_server[1].real_server[1]":        2,
				"virtual_server[1].real_server[2]":        3,
				"virtual_server[2]":                       4,
				"virtual_server[2].real_server":           5,
				"virtual_server[2].real_server[1]":        5,
				"virtual_server[2].real_server[1].weight": 6,
			},
		},
		{
			name: "multi-line strings and arrays",
			src: "a = \"\"\"\nline [x]\nb = 1\n\"\"\"\nc = '''\n\n'''\n" +
				"d = [\n  \"x\\\"]\",\n  # comment ]\n  'y',\n]\ne = \"\"\"q\"\"\"\"\"\nf = 1\n",
			want: map[string]int{"a": 1, "c": 5, "d": 8, "d[1]": 9, "d[2]": 11, "e": 13, "f": 14},
		},
		{
			name: "escaped newline in multi-line basic string",
			src:  "a = \"\"\"x \\\n  y\"\"\"\nb = 2\n",
			want: map[string]int{"a": 1, "b": 3},
		},
		{
			name: "inline tables and dotted keys",
			src: "[[virtual_server]]\nreal_server = [\n  { address = \"a\", weight = 2 },\n  {address=\"b\"},\n]\n" +
				"x.y.z = 1\n",
			want: map[string]int{
				"virtual_server[1].real_server":            2,
				"virtual_server[1].real_server[1]":         3,
				"virtual_server[1].real_server[1].address": 3,
				"virtual_server[1].real_server[1].weight":  3,
				"virtual_server[1].real_server[2].address": 4,
				"virtual_server[1].x.y":                    6,
				"virtual_server[1].x.y.z":                  6,
			},
		},
		{
			name: "quoted keys",
			src:  "[\"data plane\"]\n'it s' = 1\n\"a.b\" = 2\n",
			want: map[string]int{`"data plane"`: 1, `"data plane"."it s"`: 2, `"data plane"."a.b"`: 3},
		},
		{
			name: "header defines parents implicitly",
			src:  "\n[virtual_server.real_server]\n[[a.b]]\n",
			want: map[string]int{"virtual_server": 2, "virtual_server.real_server": 2, "a": 3, "a.b": 3, "a.b[1]": 3},
		},
		{
			name: "CRLF line ends and dates with a space",
			src:  "a = 1979-05-27 07:32:00Z\r\n[t]\r\nb = 1\r\n",
			want: map[string]int{"a": 1, "t": 2, "t.b": 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pos := indexPositions([]byte(tt.src))
			for path, want := range tt.want {
				if got := pos.lines[path]; got != want {
					t.Errorf("line of %s = %d, want %d", path, got, want)
				}
			}
		})
	}
}

func TestLineOfFallsBackToParent(t *testing.T) {
	pos := indexPositions([]byte("\n[[virtual_server]]\n[[virtual_server.real_server]]\n"))
	tests := []struct {
		path string
		want int
	}{
		{"virtual_server[1].real_server[1].weight", 3},
		{"virtual_server[1].protocol", 2},
		{"dataplane.interfaces", 0},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if got := pos.lineOf(tt.path); got != tt.want {
				t.Errorf("lineOf(%q) = %d, want %d", tt.path, got, tt.want)
			}
		})
	}
}

func TestConfigWhere(t *testing.T) {
	src := "[dataplane]\ninterfaces = [\"lo\"]\nworkers = 2\n\n[timeouts]\ntcp = \"10s\"\n\n" +
		"[[virtual_server]]\naddress = \"198.18.0.100:80\"\nprotocol = \"tcp\"\nmethod = \"nat\"\n  [[virtual_server.real_server]]\n  address = \"198.19.0.11:80\"\n  weight = 3\n"
	c, err := Parse([]byte(src), "govs.toml", LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]string{
		"dataplane.workers":                       "govs.toml:3",
		"dataplane.rx_mode":                       "govs.toml:1", // left out: its table
		"timeouts.tcp":                            "govs.toml:6",
		"timeouts.udp":                            "govs.toml:5",
		"conntrack.max_entries":                   "govs.toml", // no [conntrack] at all
		"virtual_server[1].real_server[1].weight": "govs.toml:14",
	} {
		if got := c.Where(field); got != want {
			t.Errorf("Where(%q) = %q, want %q", field, got, want)
		}
	}
}
