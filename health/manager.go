package health

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Options configure a Manager. The zero Options are the daemon's: real time, checks dialled from
// the daemon's own network namespace, nothing logged.
type Options struct {
	// Dial opens the checks' connections; nil is net.Dialer's.
	Dial DialFunc
	// Clock schedules the checks; nil is the real clock.
	Clock Clock
	// Logf, when not nil, gets one line per change of state and per failed notify command.
	Logf func(format string, args ...any)
	// OwnerLogsChanges leaves the changes of state out of Logf: the owner logs them as it takes
	// them from Drain, in its own words (the daemon names the virtual server and real server).
	OwnerLogsChanges bool
	// NotifyTimeout bounds one notify command (its process group is killed after it); 0 is
	// DefaultNotifyTimeout.
	NotifyTimeout time.Duration
}

// DefaultNotifyTimeout bounds a notify command when Options.NotifyTimeout is 0.
const DefaultNotifyTimeout = 30 * time.Second

// maxQueuedNotify bounds the notify commands waiting behind a slow one for the same target; when
// a server flaps faster than its notify command runs, the oldest waiting ones are dropped.
const maxQueuedNotify = 16

// Event is one change of a monitored server's state.
type Event struct {
	Target Target
	State  State // Up or Down
	Prev   State // Unknown, Up or Down
	// Reason is the result of the check that decided: why it failed, "" for a change to Up.
	Reason string
	Time   time.Time // when that check started, by the Manager's Clock
}

// Status is what a Manager knows of one monitored server, for govs list and its kin.
type Status struct {
	Target    Target
	Kind      Kind
	State     State
	Since     time.Time // when it entered State; zero while Unknown
	Checks    uint64    // checks completed
	LastCheck time.Time // when the last one started; zero before the first
	LastError string    // why the last check failed; "" when it succeeded
	// Successes and Failures are the consecutive results counting toward Rise (while Down) and
	// Fall (while Up).
	Successes, Failures int
}

// Manager runs a monitor per real server and collects their changes of state for one owner.
//
// Every goroutine it starts (one per monitor, and one per target while notify commands of that
// target are running) ends by Close, which waits for them.
type Manager struct {
	dial          DialFunc
	clock         Clock
	logf          func(format string, args ...any)
	logChanges    bool
	notifyTimeout time.Duration
	newChecker    func(Spec, Target, DialFunc) (Checker, error) // NewChecker, but for tests
	ctx           context.Context                               // ends at Close
	cancel        context.CancelFunc
	wg            sync.WaitGroup

	updateMu sync.Mutex // serialises Update and Close; held while monitors stop

	mu       sync.Mutex // guards what follows and every monitor's mutable fields
	mons     map[Target]*monitor
	pending  []Event
	changed  chan struct{} // capacity 1: a wake-up, not a count
	notifies map[Target]*notifyQueue
	closed   bool
}

// monitor checks one target. target, spec, checker, cancel and done are fixed at start; the rest
// is guarded by Manager.mu.
type monitor struct {
	target  Target
	spec    Spec
	checker Checker
	cancel  context.CancelFunc
	done    chan struct{} // closed when its goroutine has returned

	state               State
	since               time.Time
	checks              uint64
	lastCheck           time.Time
	lastErr             string
	successes, failures int
}

// NewManager returns a Manager monitoring nothing yet; Update gives it servers.
func NewManager(opts Options) *Manager {
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		dial:          opts.Dial,
		clock:         opts.Clock,
		logf:          opts.Logf,
		logChanges:    !opts.OwnerLogsChanges,
		notifyTimeout: opts.NotifyTimeout,
		newChecker:    NewChecker,
		ctx:           ctx,
		cancel:        cancel,
		mons:          make(map[Target]*monitor),
		changed:       make(chan struct{}, 1),
		notifies:      make(map[Target]*notifyQueue),
	}
	if m.clock == nil {
		m.clock = realClock{}
	}
	if m.logf == nil {
		m.logf = func(string, ...any) {}
	}
	if m.notifyTimeout <= 0 {
		m.notifyTimeout = DefaultNotifyTimeout
	}
	return m
}

// Update makes specs the set of monitored servers, the whole of it:
//   - a target not yet monitored starts in Unknown, its first check within one interval (the
//     first checks of the targets one Update starts are spread evenly over their interval, so a
//     start or a reload does not check every server at the same instant);
//   - a target whose Spec is unchanged keeps running untouched: its state, counters and timing;
//   - a target whose Spec changed keeps its state (so the data plane need not change), and is
//     checked the new way from then on, its counters restarted;
//   - a target missing from specs, or with KindNone, stops being monitored, and its changes not
//     yet drained are dropped, so Drain never reports a server the owner no longer has.
//
// A Spec that NewChecker rejects is not monitored (as if missing) and is named in the error;
// the others are applied all the same. Update returns once the stopped monitors have stopped.
func (m *Manager) Update(specs map[Target]Spec) error {
	m.updateMu.Lock()
	defer m.updateMu.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errors.New("health: Update after Close")
	}
	cur := make(map[Target]*monitor, len(m.mons))
	for t, mo := range m.mons {
		cur[t] = mo
	}
	m.mu.Unlock()

	var errs []error
	var stop, start []*monitor
	removed := make(map[Target]bool)
	newMonitor := func(t Target, spec Spec) *monitor {
		c, err := m.newChecker(spec, t, m.dial)
		if err != nil {
			errs = append(errs, fmt.Errorf("health check of %s: %w", t, err))
			return nil
		}
		return &monitor{target: t, spec: spec, checker: c, done: make(chan struct{})}
	}
	for t, mo := range cur {
		spec, ok := specs[t]
		switch {
		case !ok || spec.Kind == KindNone:
			stop = append(stop, mo)
			removed[t] = true
		case !spec.Equal(&mo.spec):
			stop = append(stop, mo)
			if nm := newMonitor(t, spec); nm != nil {
				start = append(start, nm)
			} else {
				removed[t] = true
			}
		}
	}
	for t, spec := range specs {
		if _, ok := cur[t]; ok || spec.Kind == KindNone {
			continue
		}
		if nm := newMonitor(t, spec); nm != nil {
			start = append(start, nm)
		}
	}

	for _, mo := range stop {
		mo.cancel()
	}
	for _, mo := range stop {
		<-mo.done
	}

	m.mu.Lock()
	for _, nm := range start {
		if old := cur[nm.target]; old != nil {
			nm.state, nm.since = old.state, old.since
		}
		m.mons[nm.target] = nm
	}
	for t := range removed {
		delete(m.mons, t)
	}
	if len(removed) > 0 {
		m.pending = slices.DeleteFunc(m.pending, func(e Event) bool { return removed[e.Target] })
	}
	m.mu.Unlock()

	slices.SortFunc(start, func(a, b *monitor) int { return a.target.compare(b.target) })
	for k, nm := range start {
		offset := nm.spec.Interval * time.Duration(k) / time.Duration(len(start))
		ctx, cancel := context.WithCancel(m.ctx)
		nm.cancel = cancel
		m.wg.Add(1)
		go m.run(ctx, nm, offset)
	}
	return errors.Join(errs...)
}

// Changed returns the channel that receives a value when changes are waiting for Drain. It is
// one wake-up for any number of changes: after it fires, Drain takes them all.
func (m *Manager) Changed() <-chan struct{} { return m.changed }

// Drain returns the changes of state since the last Drain, oldest first (so per target in the
// order they happened), and forgets them.
func (m *Manager) Drain() []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.pending
	m.pending = nil
	return out
}

// State returns the state of target, and false when it is not monitored.
func (m *Manager) State(t Target) (State, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mo, ok := m.mons[t]
	if !ok {
		return Unknown, false
	}
	return mo.state, true
}

// Status returns every monitored server's status, sorted by service, then server.
func (m *Manager) Status() []Status {
	m.mu.Lock()
	out := make([]Status, 0, len(m.mons))
	for _, mo := range m.mons {
		out = append(out, Status{
			Target: mo.target, Kind: mo.spec.Kind, State: mo.state, Since: mo.since,
			Checks: mo.checks, LastCheck: mo.lastCheck, LastError: mo.lastErr,
			Successes: mo.successes, Failures: mo.failures,
		})
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Status) int { return a.Target.compare(b.Target) })
	return out
}

// Close stops every monitor and notify command and waits for their goroutines. Changes not yet
// drained stay for Drain. It is safe to call more than once.
func (m *Manager) Close() {
	m.updateMu.Lock()
	defer m.updateMu.Unlock()
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
}

// run is one monitor's goroutine: wait, check, count, until ctx ends.
func (m *Manager) run(ctx context.Context, mo *monitor, wait time.Duration) {
	defer m.wg.Done()
	defer close(mo.done)
	for {
		t := m.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		start := m.clock.Now()
		cctx, cancel := context.WithTimeout(ctx, mo.spec.Timeout)
		err := mo.checker.Check(cctx)
		cancel()
		if ctx.Err() != nil {
			return // stopped mid-check: the result says nothing about the server
		}
		m.observe(mo, start, err)
		// Checks start an interval apart however long each took, so monitors started spread out
		// stay spread out.
		wait = start.Add(mo.spec.Interval).Sub(m.clock.Now())
	}
}

// observe counts one result and records a change of state.
func (m *Manager) observe(mo *monitor, at time.Time, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mo.checks++
	mo.lastCheck = at
	mo.lastErr = ""
	if err != nil {
		mo.lastErr = err.Error()
	}
	prev, next := mo.state, mo.state
	switch {
	case mo.state == Unknown && err == nil:
		next = Up
	case mo.state == Unknown:
		next = Down
	case err == nil:
		mo.failures = 0
		if mo.state == Down {
			if mo.successes++; mo.successes >= mo.spec.Rise {
				next = Up
			}
		}
	default:
		mo.successes = 0
		if mo.state == Up {
			if mo.failures++; mo.failures >= mo.spec.Fall {
				next = Down
			}
		}
	}
	if next == prev {
		return
	}
	mo.state, mo.since = next, at
	mo.successes, mo.failures = 0, 0
	ev := Event{Target: mo.target, State: next, Prev: prev, Reason: mo.lastErr, Time: at}
	m.pending = append(m.pending, ev)
	select {
	case m.changed <- struct{}{}:
	default:
	}
	switch {
	case !m.logChanges:
	case ev.Reason != "":
		m.logf("health: %s is %s (was %s): %s", ev.Target, ev.State, ev.Prev, ev.Reason)
	default:
		m.logf("health: %s is %s (was %s)", ev.Target, ev.State, ev.Prev)
	}
	if len(mo.spec.Notify) > 0 {
		m.notifyLocked(ev, mo)
	}
}
