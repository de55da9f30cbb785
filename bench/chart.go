package bench

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Chart geometry, in SVG user units (pixels at 100%).
const (
	chartW      = 900
	chartLeft   = 80  // room for the y-axis labels
	chartRight  = 30  // right margin
	tpTop       = 70  // throughput plot area
	tpBottom    = 300 //
	distTop     = 390 // distribution plot area
	distBottom  = 610 //
	chartH      = 720 // leaves room for the server labels under the bars
	maxMarkers  = 60  // samples drawn with a dot each; more are a plain line
	minLabelBar = 26  // bars narrower than this get no value label
)

// Colours: one per series, readable on white and by most colour-blind readers.
const (
	colThroughput = "#1f6fb4"
	colAverage    = "#7f7f7f"
	colPackets    = "#1f6fb4"
	colFlows      = "#e08a1e"
	colGrid       = "#e3e3e3"
	colAxis       = "#333333"
)

// WriteSVG draws r as a standalone SVG image: the replay's throughput over time (one point per
// sampling period, with the run's average) and, per real server, its share of the packets and
// of the flows, grouped by virtual service. No fonts or scripts are embedded; any browser or
// rsvg-convert renders it.
func (r *Report) WriteSVG(w io.Writer) error {
	bw := bufio.NewWriter(w)
	c := &svg{w: bw}
	c.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`+"\n", chartW, chartH, chartW, chartH)
	c.printf(`<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", chartW, chartH)
	c.text(chartW/2, 24, "middle", "font-size=\"16\" font-weight=\"bold\"", "govs bench replay")
	c.text(chartW/2, 44, "middle", `fill="#555555"`, fmt.Sprintf("%s packets, %s, %s: %.2f Mpps, %.1f ns/packet, %s, %d sticky violations",
		siCount(float64(r.Packets)), plural(r.Workers, "worker"), plural(r.Loops, "loop"), r.PPS/1e6, r.NsPerPacket, r.flowsTitle(), r.StickyViolations))
	r.throughputPanel(c)
	r.distributionPanel(c)
	c.printf("</svg>\n")
	if c.err != nil {
		return fmt.Errorf("failed to write the chart: %w", c.err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("failed to write the chart: %w", err)
	}
	return nil
}

// flowsTitle says how many flows the chart's flow bars count: like its packets, over all loops
// (each loop schedules every flow of the capture once more), with the capture's own count beside
// when it differs.
func (r *Report) flowsTitle() string {
	var n uint64
	for _, rr := range r.Reals {
		n += rr.Flows
	}
	s := siCount(float64(n)) + " flows scheduled"
	if n != uint64(r.Flows) {
		s += fmt.Sprintf(" (%s in the capture)", siCount(float64(r.Flows)))
	}
	return s
}

// throughputPanel draws Mpps over seconds since the start.
func (r *Report) throughputPanel(c *svg) {
	c.printf(`<g id="throughput">` + "\n")
	c.text(chartLeft, tpTop-12, "start", `font-weight="bold"`, "Throughput over time")
	xMax := r.Seconds
	yMax := r.PPS
	for _, s := range r.Throughput {
		xMax = math.Max(xMax, s.Seconds)
		yMax = math.Max(yMax, s.PPS)
	}
	xt := niceTicks(xMax)
	yt := niceTicks(yMax / 1e6)
	x := func(v float64) float64 { return scale(v, xt[len(xt)-1], chartLeft, chartW-chartRight) }
	y := func(v float64) float64 { return scale(v/1e6, yt[len(yt)-1], tpBottom, tpTop) }
	for _, v := range yt {
		py := scale(v, yt[len(yt)-1], tpBottom, tpTop)
		c.printf(`<line class="grid" x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`+"\n", chartLeft, py, chartW-chartRight, py, colGrid)
		c.text(chartLeft-8, py+4, "end", "", trimFloat(v))
	}
	for _, v := range xt {
		px := scale(v, xt[len(xt)-1], chartLeft, chartW-chartRight)
		c.printf(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>`+"\n", px, tpBottom, px, tpBottom+5, colAxis)
		c.text(px, tpBottom+19, "middle", "", trimFloat(v))
	}
	c.axes(tpTop, tpBottom)
	c.text((chartLeft+chartW-chartRight)/2, tpBottom+38, "middle", "", "seconds since the start")
	c.printf(`<text x="20" y="%d" text-anchor="middle" transform="rotate(-90 20 %d)">Mpps</text>`+"\n", (tpTop+tpBottom)/2, (tpTop+tpBottom)/2)

	if r.PPS > 0 {
		c.printf(`<line class="average" x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" stroke-width="1.5" stroke-dasharray="6 4"/>`+"\n",
			chartLeft, y(r.PPS), chartW-chartRight, y(r.PPS), colAverage)
	}
	if len(r.Throughput) == 0 {
		c.text((chartLeft+chartW-chartRight)/2, (tpTop+tpBottom)/2, "middle", `fill="#555555"`,
			"the replay was shorter than one sampling period: only its average is shown")
	} else {
		var pts strings.Builder
		for i, s := range r.Throughput {
			if i > 0 {
				pts.WriteByte(' ')
			}
			fmt.Fprintf(&pts, "%.1f,%.1f", x(s.Seconds), y(s.PPS))
		}
		c.printf(`<polyline class="throughput" fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round" points="%s"/>`+"\n", colThroughput, pts.String())
		if len(r.Throughput) <= maxMarkers {
			for _, s := range r.Throughput {
				c.printf(`<circle class="sample" cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%.2fs: %.3f Mpps</title></circle>`+"\n",
					x(s.Seconds), y(s.PPS), colThroughput, s.Seconds, s.PPS/1e6)
			}
		}
	}
	// Legend, top right inside the plot.
	lx := chartW - chartRight - 250
	c.printf(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>`+"\n", lx, tpTop-16, lx+20, tpTop-16, colThroughput)
	c.text(float64(lx+25), tpTop-12, "start", "", "per sampling period")
	c.printf(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="1.5" stroke-dasharray="6 4"/>`+"\n", lx+150, tpTop-16, lx+170, tpTop-16, colAverage)
	c.text(float64(lx+175), tpTop-12, "start", "", "average")
	c.printf("</g>\n")
}

// distributionPanel draws, per real server, two bars: its share of the packets and of the flows.
func (r *Report) distributionPanel(c *svg) {
	c.printf(`<g id="distribution">` + "\n")
	c.text(chartLeft, distTop-12, "start", `font-weight="bold"`, "Share per real server")
	var totP, totF uint64
	for _, rr := range r.Reals {
		totP += rr.Packets
		totF += rr.Flows
	}
	share := func(v, tot uint64) float64 {
		if tot == 0 {
			return 0
		}
		return 100 * float64(v) / float64(tot)
	}
	yMax := 0.0
	for _, rr := range r.Reals {
		yMax = math.Max(yMax, math.Max(share(rr.Packets, totP), share(rr.Flows, totF)))
	}
	yt := niceTicks(yMax)
	y := func(v float64) float64 { return scale(v, yt[len(yt)-1], distBottom, distTop) }
	for _, v := range yt {
		c.printf(`<line class="grid" x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`+"\n", chartLeft, y(v), chartW-chartRight, y(v), colGrid)
		c.text(chartLeft-8, y(v)+4, "end", "", trimFloat(v))
	}
	c.printf(`<text x="20" y="%d" text-anchor="middle" transform="rotate(-90 20 %d)">%% of the total</text>`+"\n", (distTop+distBottom)/2, (distTop+distBottom)/2)
	n := len(r.Reals)
	if n == 0 {
		c.axes(distTop, distBottom)
		c.text((chartLeft+chartW-chartRight)/2, (distTop+distBottom)/2, "middle", `fill="#555555"`, "no real servers in the configuration")
		c.printf("</g>\n")
		return
	}
	// One slot per real server; a small gap between services.
	services := 1
	for i := 1; i < n; i++ {
		if r.Reals[i].Service != r.Reals[i-1].Service {
			services++
		}
	}
	const serviceGap = 0.6 // in slots
	slot := float64(chartW-chartRight-chartLeft) / (float64(n) + serviceGap*float64(services-1) + 0.4)
	bar := math.Min(slot*0.38, 60)
	rotate := slot < 110
	pos := 0.2 * slot
	groupStart := pos
	for i, rr := range r.Reals {
		if i > 0 && rr.Service != r.Reals[i-1].Service {
			c.serviceBracket(r.Reals[i-1].Service, chartLeft+groupStart, chartLeft+pos, rotate)
			pos += serviceGap * slot
			groupStart = pos
		}
		cx := chartLeft + pos + slot/2
		for j, b := range []struct {
			class, colour string
			v, tot        uint64
		}{{"packets", colPackets, rr.Packets, totP}, {"flows", colFlows, rr.Flows, totF}} {
			s := share(b.v, b.tot)
			bx := cx - bar + float64(j)*bar
			c.printf(`<rect class="bar %s" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %d %s (%.1f%%)</title></rect>`+"\n",
				b.class, bx, y(s), bar-1, distBottom-y(s), b.colour, xmlEscape(rr.Service), xmlEscape(rr.Address), b.v, b.class, s)
			if bar >= minLabelBar {
				c.text(bx+bar/2, y(s)-4, "middle", `font-size="9"`, shortCount(float64(b.v)))
			}
		}
		if rotate {
			c.printf(`<text x="%.1f" y="%d" text-anchor="end" font-size="11" transform="rotate(-35 %.1f %d)">%s</text>`+"\n",
				cx, distBottom+14, cx, distBottom+14, xmlEscape(rr.Address))
		} else {
			c.text(cx, distBottom+16, "middle", `font-size="11"`, rr.Address)
		}
		pos += slot
	}
	c.serviceBracket(r.Reals[n-1].Service, chartLeft+groupStart, chartLeft+pos, rotate)
	c.axes(distTop, distBottom)
	// Legend.
	lx := chartW - chartRight - 250
	c.printf(`<rect x="%d" y="%d" width="14" height="10" fill="%s"/>`+"\n", lx, distTop-21, colPackets)
	c.text(float64(lx+19), distTop-12, "start", "", fmt.Sprintf("packets (%s)", siCount(float64(totP))))
	c.printf(`<rect x="%d" y="%d" width="14" height="10" fill="%s"/>`+"\n", lx+125, distTop-21, colFlows)
	c.text(float64(lx+144), distTop-12, "start", "", fmt.Sprintf("flows (%s)", siCount(float64(totF))))
	c.printf("</g>\n")
}

// serviceBracket names a virtual service under its real servers' bars.
func (c *svg) serviceBracket(name string, x0, x1 float64, rotated bool) {
	y := float64(distBottom + 30)
	if rotated {
		y = distBottom + 82
	}
	c.printf(`<path class="service" d="M%.1f %.1f v6 H%.1f v-6" fill="none" stroke="%s"/>`+"\n", x0+4, y, x1-4, colAxis)
	c.text((x0+x1)/2, y+20, "middle", `font-size="11" fill="#555555"`, name)
}

// axes draws the left and bottom axis lines of a plot area.
func (c *svg) axes(top, bottom int) {
	c.printf(`<path class="axis" d="M%d %d V%d H%d" fill="none" stroke="%s"/>`+"\n", chartLeft, top, bottom, chartW-chartRight, colAxis)
}

// svg writes elements and keeps the first error.
type svg struct {
	w   io.Writer
	err error
}

func (c *svg) printf(format string, a ...any) {
	if c.err == nil {
		_, c.err = fmt.Fprintf(c.w, format, a...)
	}
}

// text writes a <text> element; attrs are extra attributes written as they are.
func (c *svg) text(x, y float64, anchor, attrs, s string) {
	if attrs != "" {
		attrs = " " + attrs
	}
	c.printf(`<text x="%.1f" y="%.1f" text-anchor="%s"%s>%s</text>`+"\n", x, y, anchor, attrs, xmlEscape(s))
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// scale maps v in [0, max] onto [from, to].
func scale(v, max float64, from, to int) float64 {
	if max <= 0 {
		return float64(from)
	}
	return float64(from) + v/max*float64(to-from)
}

// niceTicks returns 0 and about five round steps (1, 2 or 5 times a power of ten) up to the
// first tick at or above max.
func niceTicks(max float64) []float64 {
	if !(max > 0) || math.IsInf(max, 0) {
		return []float64{0, 1}
	}
	raw := max / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	ticks := []float64{0}
	for i := 1; i <= 20; i++ {
		v := float64(i) * step
		ticks = append(ticks, v)
		if v >= max*(1-1e-9) {
			break
		}
	}
	return ticks
}

// trimFloat formats a tick label without trailing zeros.
func trimFloat(v float64) string {
	return strconv.FormatFloat(math.Round(v*1e6)/1e6, 'f', -1, 64)
}

// shortCount writes a count in at most four characters for a bar's label: 950, 12k, 640k, 5.1M.
func shortCount(v float64) string {
	unit := ""
	switch {
	case v >= 999.5e6:
		v, unit = v/1e9, "G"
	case v >= 999.5e3:
		v, unit = v/1e6, "M"
	case v >= 999.5:
		v, unit = v/1e3, "k"
	}
	if unit == "" || v >= 9.95 {
		return strconv.FormatFloat(v, 'f', 0, 64) + unit
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + unit
}

// siCount shortens a count: 950, 12.3k, 4.5M, 1.2G.
func siCount(v float64) string {
	switch {
	case v >= 1e9:
		return strconv.FormatFloat(v/1e9, 'f', 1, 64) + "G"
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 1, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
