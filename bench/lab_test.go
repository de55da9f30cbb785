package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestLabReportFromBenchlab reads a real benchlab -json report and checks the table's ratios
// against the ones benchlab computed itself in the same run.
func TestLabReportFromBenchlab(t *testing.T) {
	b, err := os.ReadFile("testdata/lab.json")
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseLabReport(b)
	if err != nil {
		t.Fatal(err)
	}
	var theirs struct {
		Ratios map[string]float64 `json:"ratios"`
	}
	if err := json.Unmarshal(b, &theirs); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := r.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	table := out.String()
	for key, label := range map[string]string{
		"udp64_delivered_pps": "udp delivered Mpps",
		"http_req_per_sec":    "http req/s (t2 c50)",
		"http_p99_ms":         "http p99 ms (t2 c50)",
		"http1_p50_ms":        "http p50 ms (t1 c1)",
	} {
		want, ok := theirs.Ratios[key]
		if !ok {
			t.Fatalf("testdata/lab.json has no ratio %s", key)
		}
		line := lineWith(table, label)
		if !strings.HasSuffix(strings.TrimSpace(line), fmt.Sprintf("%.2fx", want)) {
			t.Errorf("row %q = %q, want benchlab's ratio %.2fx", label, line, want)
		}
	}
	if r.Failed() {
		t.Error("Failed() on a complete report")
	}
	for _, want := range []string{"live lab (5s per measurement, 64-byte UDP flood", "figure", "govs vs kernel", "CPUs: balancer on CPU 0", "caution: other work"} {
		if !strings.Contains(table, want) {
			t.Errorf("no %q in\n%s", want, table)
		}
	}
	// testdata: kernel 89.47% busy for 172582 pps, govs's figures below; lower is better.
	k := 89.47368421052632 / 100 / 172581.8356455578 * 1e6
	g := r.Govs.UDP.BalancerCPUBusy / 100 / r.Govs.UDP.DeliveredPPS * 1e6
	if l := lineWith(table, "udp balancer CPU us/packet"); strings.Join(strings.Fields(l), " ") != fmt.Sprintf("udp balancer CPU us/packet %.2f %.2f %.2fx", k, g, k/g) {
		t.Errorf("us/packet row = %q, want %.2f %.2f %.2fx", l, k, g, k/g)
	}
	if !strings.Contains(table, "kernel(nft dnat) udp: not balancer-bound (balancer CPU 89% busy, load CPU 100%): delivered Mpps is a lower bound and its ratio flatters govs") {
		t.Errorf("no generator-bound note for the kernel phase in\n%s", table)
	}
	if l := lineWith(table, "udp offered Mpps"); !strings.HasSuffix(strings.TrimSpace(l), "-") {
		t.Errorf("context row has a ratio: %q", l)
	}
}

func lineWith(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), prefix) {
			return l
		}
	}
	return ""
}

func TestLabReportPartial(t *testing.T) {
	tests := []struct {
		name, json string
		failed     bool
		want       []string
		parseErr   bool
	}{
		{"govs setup failed", `{"duration":"5s","kernel":{"name":"kernel(nft dnat)","udp":{"frame_len":64,"offered_pps":2e5,"delivered_pps":1e5},"http":{"threads":2,"connections":50,"req_per_sec":1000,"p50_ms":1,"p99_ms":2}},"govs":{"name":"govs","error":"govs did not become ready"}}`,
			true, []string{"govs: failed: govs did not become ready", "0.100", "failed"}, false},
		{"only govs, wrk failed", `{"duration":"2s","govs":{"name":"govs","udp":{"frame_len":128,"offered_pps":2e5,"delivered_pps":2e5},"http":{"threads":2,"connections":50,"error":"wrk: exit 1"}}}`,
			true, []string{"128-byte", "not run", "govs http t2 c50: failed: wrk: exit 1"}, false},
		{"not JSON", `benchlab: needs root`, false, nil, true},
		{"no phases", `{"duration":"5s"}`, false, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseLabReport([]byte(tt.json))
			if tt.parseErr {
				if err == nil {
					t.Fatal("parsed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Failed() != tt.failed {
				t.Errorf("Failed() = %v, want %v", r.Failed(), tt.failed)
			}
			var out bytes.Buffer
			if err := r.WriteTable(&out); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("no %q in\n%s", w, out.String())
				}
			}
			if strings.Contains(out.String(), "x\n") && strings.Contains(tt.name, "failed") {
				for _, l := range strings.Split(out.String(), "\n") {
					if strings.HasSuffix(strings.TrimSpace(l), "x") && strings.Contains(l, "failed") {
						t.Errorf("a ratio next to a failed figure: %q", l)
					}
				}
			}
		})
	}
}

func TestLabRatio(t *testing.T) {
	for _, tt := range []struct {
		k, g  float64
		lower bool
		want  float64
		ok    bool
	}{{100, 150, false, 1.5, true}, {2, 1, true, 2, true}, {0, 1, false, 0, false}, {1, 0, true, 0, false}} {
		got, ok := LabRatio(tt.k, tt.g, tt.lower)
		if ok != tt.ok || ok && fmt.Sprintf("%.3f", got) != fmt.Sprintf("%.3f", tt.want) {
			t.Errorf("LabRatio(%v, %v, %v) = %v, %v; want %v, %v", tt.k, tt.g, tt.lower, got, ok, tt.want, tt.ok)
		}
	}
}
