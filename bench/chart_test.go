package bench

import (
	"bytes"
	"encoding/xml"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

// svgElem is one element of a parsed chart.
type svgElem struct {
	name  string
	attrs map[string]string
	text  string
}

// parseSVG decodes a chart with encoding/xml and flattens its elements in document order.
func parseSVG(t *testing.T, b []byte) []svgElem {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	var out []svgElem
	var open []int
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the chart is not well-formed XML: %v\n%s", err, b)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			e := svgElem{name: tok.Name.Local, attrs: map[string]string{}}
			for _, a := range tok.Attr {
				e.attrs[a.Name.Local] = a.Value
			}
			out = append(out, e)
			open = append(open, len(out)-1)
		case xml.EndElement:
			open = open[:len(open)-1]
		case xml.CharData:
			if len(open) > 0 {
				out[open[len(open)-1]].text += string(tok)
			}
		}
	}
	if len(out) == 0 || out[0].name != "svg" || out[0].attrs["xmlns"] != "http://www.w3.org/2000/svg" {
		t.Fatalf("the root is not an <svg> in the SVG namespace: %+v", out[:min(1, len(out))])
	}
	return out
}

func count(es []svgElem, name, class string) int {
	n := 0
	for _, e := range es {
		if e.name == name && (class == "" || e.attrs["class"] == class) {
			n++
		}
	}
	return n
}

func texts(es []svgElem) string {
	var b strings.Builder
	for _, e := range es {
		if e.name == "text" {
			b.WriteString(e.text)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func TestChartStructure(t *testing.T) {
	many := make([]Sample, maxMarkers+5)
	for i := range many {
		many[i] = Sample{Seconds: float64(i+1) / 10, PPS: 1e6 + float64(i)*1e4}
	}
	reals := []RealReport{
		{Service: "tcp/198.18.0.100:80", Address: "198.19.0.11:8080", Weight: 1, Packets: 600, Flows: 60},
		{Service: "tcp/198.18.0.100:80", Address: "198.19.0.12:8080", Weight: 1, Packets: 300, Flows: 30},
		{Service: "udp/<a&b>", Address: "[2001:2:0:2::11]:0", Weight: 1, Packets: 100, Flows: 10},
	}
	tests := []struct {
		name            string
		rep             Report
		points, markers int
		bars, services  int
		want            []string // texts that must appear
	}{
		{"three samples", Report{Packets: 1000, Workers: 2, Loops: 1, Seconds: 0.35, PPS: 2.9e6, Flows: 100,
			Throughput: []Sample{{0.1, 2.5e6}, {0.2, 3.1e6}, {0.3, 3.0e6}}, Reals: reals}, 3, 3, 6, 2,
			[]string{"govs bench replay", "Throughput over time", "Share per real server", "seconds since the start",
				"Mpps", "% of the total", "2 workers, 1 loop: 2.90 Mpps", "198.19.0.12:8080", "udp/<a&b>", "600", "packets (1000)", "flows (100)"}},
		{"many samples, no markers", Report{Packets: 1, Workers: 1, Loops: 3, Seconds: 7, PPS: 1e6, Throughput: many, Reals: reals[:1]},
			len(many), 0, 2, 1, []string{"1 worker, 3 loops"}},
		{"no samples", Report{Packets: 10, Workers: 1, Loops: 1, Seconds: 1e-5, PPS: 1e6, Reals: reals},
			0, 0, 6, 2, []string{"shorter than one sampling period"}},
		{"nothing at all", Report{}, 0, 0, 0, 0, []string{"no real servers"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tt.rep.WriteSVG(&b); err != nil {
				t.Fatal(err)
			}
			es := parseSVG(t, b.Bytes())
			if got := count(es, "g", ""); got != 2 {
				t.Errorf("%d groups, want 2 (throughput, distribution)", got)
			}
			points := 0
			for _, e := range es {
				if e.name == "polyline" && e.attrs["class"] == "throughput" {
					points += len(strings.Fields(e.attrs["points"]))
				}
			}
			if points != tt.points {
				t.Errorf("%d throughput points, want %d", points, tt.points)
			}
			if got := count(es, "circle", "sample"); got != tt.markers {
				t.Errorf("%d sample markers, want %d", got, tt.markers)
			}
			if got := count(es, "rect", "bar packets") + count(es, "rect", "bar flows"); got != tt.bars {
				t.Errorf("%d bars, want %d", got, tt.bars)
			}
			if got := count(es, "path", "service"); got != tt.services {
				t.Errorf("%d service brackets, want %d", got, tt.services)
			}
			if got := count(es, "path", "axis"); got != 2 {
				t.Errorf("%d axis paths, want 2", got)
			}
			all := texts(es)
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("no text %q in the chart; texts:\n%s", w, all)
				}
			}
			// Every coordinate inside the canvas: nothing drawn off the image.
			for _, e := range es {
				for _, k := range []string{"x", "y", "x1", "x2", "y1", "y2", "cx", "cy"} {
					if v, ok := e.attrs[k]; ok {
						f, err := strconv.ParseFloat(v, 64)
						if err != nil || f < 0 || f > chartW || f > chartH && strings.HasPrefix(k, "y") {
							t.Errorf("<%s %s=%q> is outside the %dx%d canvas", e.name, k, v, chartW, chartH)
						}
					}
				}
			}
		})
	}
}

// TestChartReplay draws a real small replay sampled every millisecond.
func TestChartReplay(t *testing.T) {
	cfg := loadConfig(t, "testdata/bench.toml")
	c, _ := genCapture(t, GenConfig{Flows: 2000, PacketsPerFlow: 8, TCPShare: 0.8, IPv6Share: 0.2, Size: SizeDist{}, Seed: 3})
	rep, err := Replay(c, ReplayConfig{Config: cfg, Workers: 2, Loops: 20, Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := rep.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	es := parseSVG(t, b.Bytes())
	points := 0
	for _, e := range es {
		if e.attrs["class"] == "throughput" {
			points += len(strings.Fields(e.attrs["points"]))
		}
	}
	if points != len(rep.Throughput) {
		t.Errorf("%d points for %d samples", points, len(rep.Throughput))
	}
	if got, want := count(es, "rect", "bar packets"), len(rep.Reals); got != want {
		t.Errorf("%d packet bars, want one per real server (%d)", got, want)
	}
	if got, want := count(es, "rect", "bar flows"), len(rep.Reals); got != want {
		t.Errorf("%d flow bars, want one per real server (%d)", got, want)
	}
	for _, e := range es {
		if e.name == "rect" && strings.HasPrefix(e.attrs["class"], "bar") && strings.Contains(e.attrs["height"], "-") {
			t.Errorf("bar with a negative height: %v", e.attrs)
		}
	}
}

func TestNiceTicksAndCounts(t *testing.T) {
	for _, tt := range []struct {
		max  float64
		want string
	}{{0, "0 1"}, {1, "0 0.2 0.4 0.6 0.8 1"}, {7.1, "0 2 4 6 8"}, {23.7, "0 5 10 15 20 25"}, {0.0081, "0 0.002 0.004 0.006 0.008 0.01"}} {
		var got []string
		for _, v := range niceTicks(tt.max) {
			got = append(got, trimFloat(v))
		}
		if g := strings.Join(got, " "); g != tt.want {
			t.Errorf("niceTicks(%v) = %s, want %s", tt.max, g, tt.want)
		}
	}
	for _, tt := range []struct {
		v    float64
		want string
	}{{0, "0"}, {950, "950"}, {999.6, "1.0k"}, {12345, "12k"}, {640000, "640k"}, {999600, "1.0M"}, {5.1e6, "5.1M"}, {2.4e9, "2.4G"}} {
		if got := shortCount(tt.v); got != tt.want {
			t.Errorf("shortCount(%v) = %s, want %s", tt.v, got, tt.want)
		}
		if got := shortCount(tt.v); len(got) > 4 {
			t.Errorf("shortCount(%v) = %s: longer than 4 characters", tt.v, got)
		}
	}
}

// TestChartFlowsAgree: with -loops N the flow bars count each flow once per loop; the title must
// count the same flows as the bars and their legend, and say the capture's own count apart.
func TestChartFlowsAgree(t *testing.T) {
	cfg := loadConfig(t, "testdata/bench.toml")
	const flows, loops = 300, 3
	c, _ := genCapture(t, GenConfig{Flows: flows, PacketsPerFlow: 6, TCPShare: 0.7, IPv6Share: 0.3, Seed: 4})
	rep, err := Replay(c, ReplayConfig{Config: cfg, Loops: loops})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := rep.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	es := parseSVG(t, b.Bytes())
	// The flow bars' counts, from their tooltips: "<service> <real>: N flows (P%)".
	var bars uint64
	for i, e := range es {
		if e.name == "rect" && e.attrs["class"] == "bar flows" {
			if i+1 == len(es) || es[i+1].name != "title" {
				t.Fatalf("flow bar %v without a tooltip", e.attrs)
			}
			tip := es[i+1].text
			_, after, _ := strings.Cut(tip, ": ")
			n, err := strconv.ParseUint(strings.Fields(after + " x")[0], 10, 64)
			if err != nil {
				t.Fatalf("flow bar tooltip %q: %v", tip, err)
			}
			bars += n
		}
	}
	if bars != flows*loops {
		t.Fatalf("flow bars add up to %d, want %d flows × %d loops", bars, flows, loops)
	}
	all := texts(es)
	for _, want := range []string{"900 flows scheduled (300 in the capture)", "flows (900)"} {
		if !strings.Contains(all, want) {
			t.Errorf("no %q in the chart; texts:\n%s", want, all)
		}
	}
	if strings.Contains(all, ", 300 flows,") {
		t.Errorf("the title still counts the capture's flows as if they were the bars'; texts:\n%s", all)
	}
}
