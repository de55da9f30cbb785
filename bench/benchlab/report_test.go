package main

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestProcStat(t *testing.T) {
	in := []byte("cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 5 1 4 40 2 1 1 0 3 0\ncpu1 5 0 5 40 0 0 0 0 0 0\nintr 1 2\n")
	got, err := parseProcStat(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := (cpuTimes{Busy: 12, Idle: 42}); got[0] != want {
		t.Errorf("cpu0 = %+v, want %+v (guest excluded, iowait idle)", got[0], want)
	}
	after := map[int]cpuTimes{0: {Busy: 62, Idle: 92}}
	if b := busyPercent(got, after, 0); b != 50 {
		t.Errorf("busyPercent = %v, want 50", b)
	}
	if b := busyPercent(got, after, 7); b != -1 {
		t.Errorf("busyPercent of a missing CPU = %v, want -1", b)
	}
	for _, bad := range []string{"", "cpux 1 2 3 4\n", "cpu0 1 2 x 4\n"} {
		if _, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("parseProcStat(%q) succeeded", bad)
		}
	}
}

func TestSoftnet(t *testing.T) {
	in := []byte("0019c136 0000000a 00 00 00 00 00 00 00 00 00 00 00000000 00 00\n002c5938 00000001 00 00 00 00 00 00 00 00 00 00 00000001 00 00\n")
	got, err := parseSoftnet(in)
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != 10 || got[1] != 1 {
		t.Errorf("drops = %v, want map[0:10 1:1]", got)
	}
	if _, err := parseSoftnet([]byte("zz\n")); err == nil {
		t.Error("parseSoftnet accepted a one-field line")
	}
}

func TestRatio(t *testing.T) {
	for _, tt := range []struct {
		name         string
		kernel, govs float64
		lower        bool
		want         float64
		ok           bool
	}{
		{"throughput", 800000, 400000, false, 0.5, true},
		{"latency", 2, 1, true, 2, true},
		{"kernel zero", 0, 5, false, 0, false},
		{"govs zero latency", 1, 0, true, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ratio(tt.kernel, tt.govs, tt.lower)
			if ok != tt.ok || math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("ratio = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestReport checks a govs phase that failed: the kernel figures print, govs says failed, no
// ratio is invented, and the JSON carries the error.
func TestReport(t *testing.T) {
	r := newReport(options{duration: 2e9, balancerCPU: 0, loadCPU: 1})
	r.Kernel = &phaseResult{Name: "kernel(nft dnat)",
		UDP:  &udpResult{FrameLen: 64, Seconds: 2, DeliveredPPS: 800000, OfferedPPS: 900000},
		HTTP: &httpResult{Threads: 2, Conns: 50, ReqPerSec: 40000, P50Ms: 1, P99Ms: 4, Requests: 80000},
	}
	r.Govs = &phaseResult{Name: "govs", Error: "govs exited before becoming ready"}
	var tbl bytes.Buffer
	writeTable(&tbl, r)
	out := tbl.String()
	for _, want := range []string{"udp64 delivered pps", "800000", "failed", "not run", "govs setup: govs exited before becoming ready"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if len(r.Ratios) != 0 {
		t.Errorf("ratios %v with govs failed, want none", r.Ratios)
	}

	r.Govs = &phaseResult{Name: "govs",
		UDP:  &udpResult{FrameLen: 64, Seconds: 2, DeliveredPPS: 400000},
		HTTP: &httpResult{ReqPerSec: 20000, P50Ms: 2, P99Ms: 2, Requests: 40000},
	}
	var js bytes.Buffer
	if err := writeJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Ratios map[string]float64 `json:"ratios"`
	}
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"udp64_delivered_pps": 0.5, "http_req_per_sec": 0.5, "http_p50_ms": 0.5, "http_p99_ms": 2}
	for k, v := range want {
		if back.Ratios[k] != v {
			t.Errorf("ratio %s = %v, want %v (all: %v)", k, back.Ratios[k], v, back.Ratios)
		}
	}
	if len(back.Ratios) != len(want) {
		t.Errorf("ratios %v, want exactly %v", back.Ratios, want)
	}
}

func TestOptionsCheck(t *testing.T) {
	good := options{duration: 2e9, flows: 100, frameLen: 64, batch: 64, balancerCPU: 0, loadCPU: 1, phases: "gen,kernel,govs", sink: "servers"}
	if err := good.check(); err != nil {
		t.Fatalf("good options rejected: %v", err)
	}
	for _, tt := range []struct {
		name string
		mod  func(*options)
	}{
		{"same cpu", func(o *options) { o.loadCPU = 0 }},
		{"short duration", func(o *options) { o.duration = 1e6 }},
		{"unknown phase", func(o *options) { o.phases = "kernel,ipvs" }},
		{"too many flows", func(o *options) { o.flows = 70000 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := good
			tt.mod(&o)
			if err := o.check(); err == nil {
				t.Error("check accepted bad options")
			}
		})
	}
}
