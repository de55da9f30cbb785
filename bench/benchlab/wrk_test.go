package main

import (
	"testing"
	"time"
)

const wrkSample = `Running 10s test @ http://198.18.0.100:80/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   635.91us    0.89ms  12.92ms   93.11%
    Req/Sec    38.29k     3.14k   44.13k    74.50%
  Latency Distribution
     50%  350.00us
     75%  577.00us
     90%    1.20ms
     99%    4.33ms
  762023 requests in 10.00s, 102.47MB read
  Socket errors: connect 0, read 2, write 0, timeout 12
  Non-2xx or 3xx responses: 5
Requests/sec:  76200.12
Transfer/sec:     10.25MB
`

func TestParseWrk(t *testing.T) {
	for _, tt := range []struct {
		name    string
		in      string
		want    wrkResult
		wantErr bool
	}{
		{"full", wrkSample, wrkResult{Requests: 762023, ReqPerSec: 76200.12, P50: 350 * time.Microsecond,
			P99: 4330 * time.Microsecond, SocketErrors: 14, Non2xx: 5}, false},
		{"seconds and minutes", "  Latency Distribution\n     50%    2.00s\n     99%    1.50m\n  3 requests in 10.00s, 1KB read\nRequests/sec:      0.30\n",
			wrkResult{Requests: 3, ReqPerSec: 0.3, P50: 2 * time.Second, P99: 90 * time.Second}, false},
		{"no latency distribution", "  0 requests in 10.00s, 0B read\nRequests/sec:      0.00\n", wrkResult{}, true},
		{"empty", "", wrkResult{}, true},
		{"bad unit", "     50%  3.00xs\n", wrkResult{}, true},
		{"NaN rate", "Requests/sec: NaN\n", wrkResult{}, true},
		{"bad socket errors", "  Socket errors: connect x\n", wrkResult{}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseWrk(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("(-want +got):\n-%+v\n+%+v", tt.want, got)
			}
		})
	}
}

// FuzzParseWrk feeds wrk-like text; the parser must never panic and a success must carry sane
// numbers.
func FuzzParseWrk(f *testing.F) {
	f.Add(wrkSample)
	f.Add("     50%  1e400us\n     99%  -1ms\n")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseWrk(s)
		if err != nil {
			return
		}
		if r.P50 < 0 || r.P99 < 0 || !(r.ReqPerSec >= 0) {
			t.Fatalf("parseWrk(%q) = %+v", s, r)
		}
	})
}
