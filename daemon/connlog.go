package daemon

import (
	"fmt"
	"os"

	"github.com/govs/govs/config"
	"github.com/govs/govs/connlog"
	"github.com/govs/govs/control"
)

// openConnLog opens cfg's connection log file, or returns nil when cfg has none. Its error is
// one line: file:line, field, what failed and what to do.
func openConnLog(cfg *config.Config) (*os.File, error) {
	if cfg.Log.Connections == "" {
		return nil, nil
	}
	f, err := connlog.Open(cfg.Log.Connections)
	if err != nil {
		return nil, fmt.Errorf("%s: log.connections: %w", cfg.Where("log.connections"), err)
	}
	return f, nil
}

// setConnLogLocked makes the connection log follow cfg, whose file (nil: none) openConnLog
// opened: it starts the writer and turns the workers' recording on, hands the writer the file
// (a new path, or the same one reopened: a SIGHUP after logrotate moved the file reopens it), or
// stops both: the workers first, then the writer, whose last drain writes the events they had
// queued (Engine.SetConnLog keeps them for it).
func (d *Daemon) setConnLogLocked(cfg *config.Config, f *os.File) {
	switch {
	case f != nil && d.connlog == nil:
		d.connlog = connlog.New(f, cfg.Log.Connections, cfg.Log.ConnectionsRate, d.engine, d.engine.Epoch(), &d.connlogCounts)
		d.engine.SetConnLog(true)
	case f != nil:
		d.connlog.Swap(f, cfg.Log.Connections, cfg.Log.ConnectionsRate)
	case d.connlog != nil:
		d.engine.SetConnLog(false)
		if err := d.connlog.Close(); err != nil {
			d.logf("connection log: failed to close %s: %v", d.connlog.Path(), err)
		}
		d.connlog = nil
	}
}

// connLogCounters adds the connection log writer's counts to a status's counters (the data
// plane's connlog_dropped is there already).
func (d *Daemon) connLogCounters(st *control.Status) {
	if st.Counters == nil {
		return
	}
	st.Counters["connlog_lines"] = d.connlogCounts.Lines.Load()
	st.Counters["connlog_rate_limited"] = d.connlogCounts.RateLimited.Load()
	st.Counters["connlog_write_errors"] = d.connlogCounts.WriteErrors.Load()
}
