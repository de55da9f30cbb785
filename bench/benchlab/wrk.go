package main

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what we read from wrk's --latency report.
type wrkResult struct {
	Requests     uint64        // "N requests in ..."
	ReqPerSec    float64       // "Requests/sec:"
	P50, P99     time.Duration // "Latency Distribution" 50% and 99%
	SocketErrors uint64        // sum of "Socket errors: connect a, read b, write c, timeout d"
	Non2xx       uint64        // "Non-2xx or 3xx responses: N"
}

// parseWrk reads wrk's text report (wrk 4.x with --latency). It fails when the lines every
// run prints (requests, Requests/sec, the 50% and 99% quantiles) are missing, so a wrk that
// could not connect at all is reported as an error rather than as zero latency.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	var haveReqs, haveRate, have50, have99 bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case f[0] == "Requests/sec:" && len(f) == 2:
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil || !(v >= 0 && v < 1e12) {
				return r, fmt.Errorf("failed to parse wrk line %q: bad rate", line)
			}
			r.ReqPerSec, haveRate = v, true
		case (f[0] == "50%" || f[0] == "99%") && len(f) == 2:
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return r, fmt.Errorf("failed to parse wrk line %q: %w", line, err)
			}
			if f[0] == "50%" {
				r.P50, have50 = d, true
			} else {
				r.P99, have99 = d, true
			}
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			v, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("failed to parse wrk line %q: bad request count", line)
			}
			r.Requests, haveReqs = v, true
		case strings.HasPrefix(line, "Socket errors:"):
			// "Socket errors: connect 0, read 1, write 0, timeout 7"
			for _, part := range strings.Split(strings.TrimPrefix(line, "Socket errors:"), ",") {
				kv := strings.Fields(part)
				if len(kv) != 2 {
					return r, fmt.Errorf("failed to parse wrk line %q: bad field %q", line, part)
				}
				v, err := strconv.ParseUint(kv[1], 10, 64)
				if err != nil {
					return r, fmt.Errorf("failed to parse wrk line %q: bad count %q", line, kv[1])
				}
				r.SocketErrors += v
			}
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:") && len(f) == 5:
			v, err := strconv.ParseUint(f[4], 10, 64)
			if err != nil {
				return r, fmt.Errorf("failed to parse wrk line %q: bad count", line)
			}
			r.Non2xx = v
		}
	}
	if err := sc.Err(); err != nil {
		return r, fmt.Errorf("failed to read wrk output: %w", err)
	}
	if !haveReqs || !haveRate || !have50 || !have99 {
		return r, fmt.Errorf("failed to parse wrk output: no request count, rate or 50%%/99%% latency (run with --latency?)")
	}
	return r, nil
}

// wrkUnits are the suffixes wrk's format_time prints, longest match first.
var wrkUnits = []struct {
	suffix string
	unit   time.Duration
}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}}

// parseWrkDuration parses wrk's "350.00us", "1.20ms", "2.00s", "1.50m".
func parseWrkDuration(s string) (time.Duration, error) {
	for _, u := range wrkUnits {
		num, ok := strings.CutSuffix(s, u.suffix)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(num, 64)
		if err != nil || !(v >= 0 && v <= 1e6) { // also rejects NaN
			return 0, fmt.Errorf("bad duration %q", s)
		}
		return time.Duration(v * float64(u.unit)), nil
	}
	return 0, fmt.Errorf("bad duration %q: no unit", s)
}
