package daemon

import (
	"errors"
	"testing"
	"time"

	"github.com/govs/govs/config"
)

// TestRecordReload: Status reports the latest reload attempt, applied or rejected, and nothing
// before the first.
func TestRecordReload(t *testing.T) {
	d := &Daemon{cfg: &config.Config{File: "govs.toml"}}
	if r := d.Status().LastReload; r != nil {
		t.Fatalf("LastReload before any reload = %+v, want nil", *r)
	}
	t1 := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	d.RecordReload(t1, errors.New("govs.toml:3: dataplane.bogus: unknown key\ngovs.toml:9: weight: out of range"))
	r := d.Status().LastReload
	if r == nil || r.Applied || !r.Time.Equal(t1) || r.Error != "govs.toml:3: dataplane.bogus: unknown key\ngovs.toml:9: weight: out of range" {
		t.Fatalf("LastReload after a rejected reload = %+v", r)
	}
	r.Error = "changed by a caller"
	if d.Status().LastReload.Error == "changed by a caller" {
		t.Errorf("Status hands out the daemon's own record; want a copy")
	}
	t2 := t1.Add(time.Minute)
	d.RecordReload(t2, nil)
	if r := d.Status().LastReload; r == nil || !r.Applied || !r.Time.Equal(t2) || r.Error != "" {
		t.Fatalf("LastReload after an applied reload = %+v", r)
	}
}
