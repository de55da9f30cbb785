package daemon

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/govs/govs/control"
	"github.com/govs/govs/dataplane"
	"github.com/govs/govs/metrics"
)

// TestEveryCounterExported: each counter the data plane reports (`govs stats`) has its metric.
func TestEveryCounterExported(t *testing.T) {
	st := dataplane.WorkerStats()
	if len(st.Counters) == 0 {
		t.Fatal("the data plane reports no counters")
	}
	for name := range st.Counters {
		if _, ok := metrics.CounterMetrics[name]; !ok {
			t.Errorf("data plane counter %q has no metric: add it to metrics.CounterMetrics and README.md's Metrics", name)
		}
	}
}

func TestHAOf(t *testing.T) {
	if ha := haOf(&control.Status{}); ha != nil {
		t.Errorf("a status without \"ha\": %+v, want nil", ha)
	}
	// The daemon's own status, through the JSON operators read.
	since := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	st := &control.Status{HA: control.HAStatus{State: "backup", Transitions: 1, Sync: &control.HASync{
		Snapshot: control.HASnapshot{Receiving: true, Since: &since, Entries: 42}}}}
	if got, want := haOf(st), (&metrics.HA{State: "backup", Transitions: 1, Snapshot: &metrics.SyncSnapshot{Receiving: true, Since: since, Entries: 42}}); !reflect.DeepEqual(got, want) {
		t.Errorf("status %+v: %+v, want %+v", st.HA, got, want)
	}
	for _, tt := range []struct {
		json string
		want *metrics.HA
	}{
		{`{"ha": {"state": "standalone", "forwarding": true}}`, nil},
		{`{"ha": {"state": "active", "forwarding": true, "transitions": 3, "peers": []}}`, &metrics.HA{State: "active", Forwarding: true, Transitions: 3}},
		{`{"ha": {"state": "backup"}}`, &metrics.HA{State: "backup"}},
		{`{"ha": {"state": "active", "sync": {"converged": true, "snapshot": {"sending": true, "receiving": false, "since": "2026-12-07T12:00:00Z", "entries": 300, "total": 1000}}}}`,
			&metrics.HA{State: "active", Snapshot: &metrics.SyncSnapshot{Sending: true, Since: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC), Entries: 300, Total: 1000}}},
		{`{"ha": {"state": "backup", "sync": {"snapshot": {"sending": false, "receiving": false, "entries": 0, "total": 0}}}}`,
			&metrics.HA{State: "backup", Snapshot: &metrics.SyncSnapshot{}}},
	} {
		got := haOfJSON([]byte(tt.json))
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %+v, want %+v", tt.json, got, tt.want)
		}
	}
}

func TestCountReloads(t *testing.T) {
	d := &Daemon{}
	d.obs.start = time.Unix(100, 0)
	d.RecordReload(time.Unix(200, 0), nil)
	d.RecordReload(time.Unix(300, 0), errTest)
	d.RecordReload(time.Unix(400, 0), errTest)
	if a, r := d.obs.applied.Load(), d.obs.rejected.Load(); a != 1 || r != 2 {
		t.Errorf("applied %d rejected %d, want 1 and 2", a, r)
	}
}

var errTest = errors.New("rejected")
