package daemon

import (
	"time"

	"github.com/govs/govs/control"
)

// RecordReload records the outcome of a reload attempted at t, for Status (`govs stats`): err is
// nil when the new configuration was applied, else why it was rejected, whether the file failed
// to parse or validate (and never reached Reload) or Reload refused it.
func (d *Daemon) RecordReload(t time.Time, err error) {
	r := &control.Reload{Time: t, Applied: err == nil}
	if err != nil {
		r.Error = err.Error()
	}
	d.mu.Lock()
	if err == nil {
		r.OverridesDropped = d.takeDroppedLocked()
		r.PendingRestart, d.pendingRestart = d.pendingRestart, nil
	}
	d.lastReload = r
	d.mu.Unlock()
	d.countReload(err)
}
