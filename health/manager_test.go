package health

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeChecker returns whatever the test last set, or blocks until its context ends.
type fakeChecker struct {
	mu        sync.Mutex
	err       error
	block     bool
	calls     int
	cancelled int // checks that ended because their context did
}

func (c *fakeChecker) set(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

func (c *fakeChecker) Check(ctx context.Context) error {
	c.mu.Lock()
	c.calls++
	err, block := c.err, c.block
	c.mu.Unlock()
	if block {
		<-ctx.Done()
		c.mu.Lock()
		c.cancelled++
		c.mu.Unlock()
		return ctx.Err()
	}
	return err
}

// fakes builds a Manager on a fake clock whose checkers are fakeCheckers, one per monitor
// started, found by target (the latest one).
type fakes struct {
	clk   *fakeClock
	m     *Manager
	mu    sync.Mutex
	byT   map[Target]*fakeChecker
	built int
	// initial is the result a new checker starts with.
	initial error
	block   bool
}

func newFakes(t *testing.T, opts Options) *fakes {
	f := &fakes{clk: newFakeClock(), byT: make(map[Target]*fakeChecker)}
	opts.Clock = f.clk
	f.m = NewManager(opts)
	f.m.newChecker = func(s Spec, tg Target, _ DialFunc) (Checker, error) {
		if err := s.Validate(); err != nil {
			return nil, err
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		c := &fakeChecker{err: f.initial, block: f.block}
		f.byT[tg] = c
		f.built++
		return c, nil
	}
	t.Cleanup(f.m.Close)
	return f
}

func (f *fakes) checker(tg Target) *fakeChecker {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byT[tg]
}

func (f *fakes) builtCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.built
}

// step lets n idle monitors run one more check each, and waits until they are idle again.
func (f *fakes) step(t *testing.T, d time.Duration, n int) {
	t.Helper()
	f.clk.waitTimers(t, n)
	f.clk.Advance(d)
	f.clk.waitTimers(t, n)
}

func target(service, server string) Target {
	return Target{Service: service, Server: netip.MustParseAddrPort(server)}
}

var (
	tA = target("tcp/198.18.0.100:80", "198.18.1.11:80")
	tB = target("tcp/198.18.0.100:80", "198.18.1.12:80")
	tC = target("tcp/198.18.0.100:80", "198.18.1.13:80")
	tD = target("udp/198.18.0.100:53", "198.18.1.11:53")
)

func tcpSpec() Spec {
	return Spec{Kind: KindTCP, Interval: time.Second, Timeout: time.Second, Rise: 2, Fall: 3}
}

var errDown = errors.New("connect: connection refused")

// transitions is the part of events a test asserts: target, from, to.
func transitions(evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Target.Server.String()+" "+e.Prev.String()+">"+e.State.String())
	}
	return out
}

func TestRiseFall(t *testing.T) {
	f := newFakes(t, Options{})
	if err := f.m.Update(map[Target]Spec{tA: tcpSpec()}); err != nil {
		t.Fatal(err)
	}
	// The only monitor started has no one to spread against: its first check is at once.
	f.clk.waitTimers(t, 1)
	c := f.checker(tA)
	wantNow := func(label string, want ...string) {
		t.Helper()
		if got := transitions(f.m.Drain()); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: transitions %q, want %q", label, got, want)
		}
	}
	wantNow("first success", "198.18.1.11:80 unknown>up")
	if s, _ := f.m.State(tA); s != Up {
		t.Fatalf("State = %s, want up", s)
	}

	// fall = 3: two failures leave it up; a success in between starts the count again.
	c.set(errDown)
	f.step(t, time.Second, 1)
	f.step(t, time.Second, 1)
	wantNow("two failures")
	c.set(nil)
	f.step(t, time.Second, 1)
	c.set(errDown)
	f.step(t, time.Second, 1)
	f.step(t, time.Second, 1)
	wantNow("a success, then two failures")
	st := f.m.Status()
	if len(st) != 1 || st[0].State != Up || st[0].Failures != 2 || st[0].LastError != errDown.Error() || st[0].Checks != 6 {
		t.Fatalf("Status = %+v, want up with 2 failures counted after 6 checks", st)
	}
	f.step(t, time.Second, 1)
	evs := f.m.Drain()
	if got := transitions(evs); !reflect.DeepEqual(got, []string{"198.18.1.11:80 up>down"}) {
		t.Fatalf("third failure in a row: transitions %q, want up>down", got)
	}
	if evs[0].Reason != errDown.Error() {
		t.Errorf("down event's Reason = %q, want the failed check's %q", evs[0].Reason, errDown)
	}

	// rise = 2: one success is not enough; a failure in between starts the count again.
	c.set(nil)
	f.step(t, time.Second, 1)
	c.set(errDown)
	f.step(t, time.Second, 1)
	c.set(nil)
	f.step(t, time.Second, 1)
	wantNow("success, failure, success")
	f.step(t, time.Second, 1)
	wantNow("second success in a row", "198.18.1.11:80 down>up")

	select {
	case <-f.m.Changed():
	default:
		t.Error("Changed did not fire for changes that were waiting")
	}
}

func TestFirstFailureIsDown(t *testing.T) {
	f := newFakes(t, Options{})
	f.initial = errDown
	if err := f.m.Update(map[Target]Spec{tA: tcpSpec()}); err != nil {
		t.Fatal(err)
	}
	f.clk.waitTimers(t, 1)
	if got := transitions(f.m.Drain()); !reflect.DeepEqual(got, []string{"198.18.1.11:80 unknown>down"}) {
		t.Fatalf("transitions %q, want unknown>down after one failure", got)
	}
}

func TestFirstChecksSpread(t *testing.T) {
	f := newFakes(t, Options{})
	spec := tcpSpec()
	spec.Interval = 4 * time.Second
	if err := f.m.Update(map[Target]Spec{tA: spec, tB: spec, tC: spec, tD: spec}); err != nil {
		t.Fatal(err)
	}
	// Four monitors, one interval: first checks a quarter interval apart. The first ran at once
	// and waits a whole interval for its second.
	f.clk.waitTimers(t, 4)
	want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second}
	if got := f.clk.pending(); !reflect.DeepEqual(got, want) {
		t.Fatalf("timers armed for %v, want %v", got, want)
	}
}

func TestUpdate(t *testing.T) {
	f := newFakes(t, Options{})
	spec := tcpSpec()
	if err := f.m.Update(map[Target]Spec{tA: spec}); err != nil {
		t.Fatal(err)
	}
	f.clk.waitTimers(t, 1)
	if got := transitions(f.m.Drain()); len(got) != 1 {
		t.Fatalf("transitions %q, want unknown>up", got)
	}

	// The same Spec again: the monitor is left alone.
	if err := f.m.Update(map[Target]Spec{tA: spec}); err != nil {
		t.Fatal(err)
	}
	if f.builtCount() != 1 {
		t.Fatalf("an unchanged Spec built a new checker (%d built)", f.builtCount())
	}

	// A changed Spec: a new checker, the state carried over. The new check fails and with
	// fall = 1 that is up>down, which it could not be had the state gone back to unknown.
	changed := spec
	changed.Fall = 1
	f.initial = errDown
	if err := f.m.Update(map[Target]Spec{tA: changed}); err != nil {
		t.Fatal(err)
	}
	f.clk.waitTimers(t, 1)
	if f.builtCount() != 2 {
		t.Fatalf("%d checkers built, want a second one for the changed Spec", f.builtCount())
	}
	if got := transitions(f.m.Drain()); !reflect.DeepEqual(got, []string{"198.18.1.11:80 up>down"}) {
		t.Fatalf("transitions %q after the Spec changed, want up>down", got)
	}

	// Adding B leaves A alone; B's change waits undrained, then B goes: its change goes too.
	f.initial = nil
	if err := f.m.Update(map[Target]Spec{tA: changed, tB: spec}); err != nil {
		t.Fatal(err)
	}
	f.clk.waitTimers(t, 2)
	if f.builtCount() != 3 {
		t.Fatalf("%d checkers built, want one more, for B only", f.builtCount())
	}
	if err := f.m.Update(map[Target]Spec{tA: changed, tC: {Kind: KindNone}}); err != nil {
		t.Fatal(err)
	}
	if got := f.m.Drain(); len(got) != 0 {
		t.Fatalf("Drain after B was removed = %q, want nothing", transitions(got))
	}
	if _, ok := f.m.State(tB); ok {
		t.Error("B is still monitored after Update left it out")
	}
	if _, ok := f.m.State(tC); ok {
		t.Error("C, of kind none, is monitored")
	}
	if s, ok := f.m.State(tA); !ok || s != Down {
		t.Errorf("A is %s (monitored %v) after Updates that kept its Spec, want down", s, ok)
	}

	// A Spec the checker rejects is named in the error; the rest of the Update applies.
	bad := spec
	bad.Rise = 0
	err := f.m.Update(map[Target]Spec{tA: changed, tB: spec, tC: bad})
	if err == nil || !strings.Contains(err.Error(), tC.String()) || !strings.Contains(err.Error(), "rise 0") {
		t.Fatalf("Update with a bad Spec: %v, want an error naming %s and its rise", err, tC)
	}
	if _, ok := f.m.State(tB); !ok {
		t.Error("B was not started alongside the bad Spec")
	}
	if got := len(f.m.Status()); got != 2 {
		t.Errorf("%d servers monitored, want A and B", got)
	}
}

func TestCloseStopsChecksInFlight(t *testing.T) {
	f := newFakes(t, Options{})
	f.block = true
	if err := f.m.Update(map[Target]Spec{tA: tcpSpec(), tB: tcpSpec()}); err != nil {
		t.Fatal(err)
	}
	// A checks at once and blocks in it; B waits for its timer.
	f.clk.waitTimers(t, 1)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		c := f.checker(tA)
		c.mu.Lock()
		calls := c.calls
		c.mu.Unlock()
		if calls == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("A's first check never started")
		}
	}
	f.m.Close()
	c := f.checker(tA)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancelled != 1 {
		t.Errorf("Close returned with A's check not cancelled (%d cancelled)", c.cancelled)
	}
	if len(f.clk.pending()) != 0 {
		t.Errorf("B's timer is still armed after Close: its monitor did not stop")
	}
	if err := f.m.Update(map[Target]Spec{tA: tcpSpec()}); err == nil {
		t.Error("Update after Close succeeded")
	}
	if got := f.m.Drain(); len(got) != 0 {
		t.Errorf("a check cancelled by Close counted as a result: %q", transitions(got))
	}
}

// waitFile waits until path has at least n lines holding want, bounded so that a notify command
// that never runs fails the test instead of hanging it.
func waitFile(t *testing.T, path, want string, n int) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.Count(string(b), want) >= n {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %q, want %d lines with %q", path, b, n, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestNotify(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "notify.log")
	// The command of the first change (up) blocks until the test lets it go: the checks must go on
	// meanwhile, and the second change's command must wait for the first.
	script := writeScript(t, dir, "notify", `echo $$ > "$0.pid.$GOVS_EVENT"
[ "$GOVS_EVENT" = up ] && while [ ! -e "$0.go" ]; do sleep 0.01; done
echo "$GOVS_EVENT prev=$GOVS_PREVIOUS_STATE vs=$GOVS_VIRTUAL_SERVER rs=$GOVS_REAL_SERVER addr=$GOVS_REAL_SERVER_ADDRESS port=$GOVS_REAL_SERVER_PORT reason=$GOVS_REASON" >> `+log+"\n")
	var logMu sync.Mutex
	var logged []string
	f := newFakes(t, Options{Logf: func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		logged = append(logged, format)
	}})
	spec := tcpSpec()
	spec.Fall = 1
	spec.Port = 8080
	spec.Notify = []string{script}
	if err := f.m.Update(map[Target]Spec{tA: spec}); err != nil {
		t.Fatal(err)
	}
	f.clk.waitTimers(t, 1)
	waitFile(t, script+".pid.up", "\n", 1) // the up command is running, and blocked

	f.checker(tA).set(errDown)
	f.step(t, time.Second, 1) // went on checking while the notify command blocks
	if got := transitions(f.m.Drain()); !reflect.DeepEqual(got, []string{"198.18.1.11:80 unknown>up", "198.18.1.11:80 up>down"}) {
		t.Fatalf("transitions %q, want unknown>up, up>down", got)
	}
	if _, err := os.Stat(script + ".pid.down"); err == nil {
		t.Fatal("the down command started before the up command ended")
	}
	if err := os.WriteFile(script+".go", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got := waitFile(t, log, "\n", 2)
	want := "up prev=unknown vs=tcp/198.18.0.100:80 rs=198.18.1.11:80 addr=198.18.1.11 port=8080 reason=\n" +
		"down prev=up vs=tcp/198.18.0.100:80 rs=198.18.1.11:80 addr=198.18.1.11 port=8080 reason=" + errDown.Error() + "\n"
	if got != want {
		t.Fatalf("notify log:\n%s\nwant:\n%s", got, want)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if len(logged) != 2 {
		t.Errorf("Logf got %q, want one line per change", logged)
	}
}

func TestCloseKillsNotify(t *testing.T) {
	dir := t.TempDir()
	script := writeScript(t, dir, "notify", `sleep 300 &
echo $! > "$0.pid"
wait
`)
	f := newFakes(t, Options{})
	spec := tcpSpec()
	spec.Notify = []string{script}
	if err := f.m.Update(map[Target]Spec{tA: spec}); err != nil {
		t.Fatal(err)
	}
	pid := readPid(t, waitFile(t, script+".pid", "\n", 1))
	f.m.Close() // returns only once the notify goroutine has: the command was killed
	waitGone(t, pid)
}

func readPid(t *testing.T, s string) int {
	t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("pid %q: %v", s, err)
	}
	return pid
}

// TestOwnerLogsChanges: with OwnerLogsChanges the changes still reach Drain, but not Logf.
func TestOwnerLogsChanges(t *testing.T) {
	var logMu sync.Mutex
	var logged []string
	f := newFakes(t, Options{OwnerLogsChanges: true, Logf: func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		logged = append(logged, format)
	}})
	spec := tcpSpec()
	spec.Fall = 1
	if err := f.m.Update(map[Target]Spec{tA: spec}); err != nil {
		t.Fatal(err)
	}
	f.clk.waitTimers(t, 1)
	f.checker(tA).set(errDown)
	f.step(t, time.Second, 1)
	if got := transitions(f.m.Drain()); !reflect.DeepEqual(got, []string{"198.18.1.11:80 unknown>up", "198.18.1.11:80 up>down"}) {
		t.Fatalf("transitions %q, want unknown>up, up>down", got)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if len(logged) != 0 {
		t.Errorf("Logf got %q, want nothing: the owner logs the changes", logged)
	}
}
