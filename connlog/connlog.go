// Package connlog writes the connection log ([log] connections): one line per connection the data
// plane created and expired, drained from the workers' rings at a bounded rate, off the
// per-packet path.
package connlog

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/govs/govs/dataplane"
)

// Source is where the events come from: dataplane.Engine.
type Source interface {
	// ConnLogDrain moves up to len(out) events into out and returns how many.
	ConnLogDrain(out []dataplane.ConnEvent) int
}

var _ Source = (*dataplane.Engine)(nil)

// DefaultRate is the most lines per second written when [log] connections_rate is not set.
const DefaultRate = 10000

// Interval is how often the writer drains the workers' rings. A worker's ring holds 4096 events,
// about 200,000 events a second: a worker may create and end about 100,000 connections a second
// (two events each) before its ring overflows (counted as connlog_dropped); past the rate limit
// events are drained and counted, not written.
const Interval = 20 * time.Millisecond

// limitedEvery is how often at most the writer warns that it drops lines over the rate limit.
const limitedEvery = 10 * time.Second

// Counters are the log's counts, kept across writers (a reload that turns the log off and on
// again keeps counting).
type Counters struct {
	Lines       atomic.Uint64 // lines written
	RateLimited atomic.Uint64 // events drained but not written: over the rate limit
	WriteErrors atomic.Uint64 // writes (or flushes) the file refused; their lines are lost
}

// Open opens (or creates) the log file at path for appending, as Writer and a reload need it.
// Its error tells the operator what to fix.
func Open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is said once, below
		}
		return nil, fmt.Errorf("cannot open %s for appending: %w; create its directory or fix its permissions, or remove the key to log no connections", path, err)
	}
	return f, nil
}

// Writer drains a Source and writes its events as lines into a file. It owns its goroutine
// (RoutineWrite): New starts it, Close stops it.
type Writer struct {
	src   Source
	epoch time.Time // the Source's clock: an event's Time counts from it
	c     *Counters

	mu   sync.Mutex // guards the fields below; the goroutine holds it while it writes
	f    *os.File
	bw   *bufio.Writer
	path string
	rate int     // lines per second at most
	bank float64 // tokens: lines that may be written now, at most rate
	at   time.Time
	warn time.Time // the last write error logged

	// log gets the warnings; limited counts the lines dropped over the rate limit since the last
	// warning about them, which goes out at most every limitedEvery (limitedAt: the last one).
	// The count is the news, so a warning held back is not counted as suppressed: the next one
	// says how many lines were dropped since.
	log       *slog.Logger
	limited   uint64
	limitedAt time.Time

	buf  [256]dataplane.ConnEvent
	line []byte

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// New returns a Writer that writes src's events into f (opened by Open; path names it in
// messages) at most rate lines a second, counting into c, and starts its goroutine. epoch is
// src's clock (dataplane.Engine.Epoch).
func New(f *os.File, path string, rate int, src Source, epoch time.Time, c *Counters) *Writer {
	w := newWriter(f, path, rate, src, epoch, c, time.Now())
	go w.RoutineWrite()
	return w
}

func newWriter(f *os.File, path string, rate int, src Source, epoch time.Time, c *Counters, now time.Time) *Writer {
	w := &Writer{
		src: src, epoch: epoch, c: c,
		f: f, bw: bufio.NewWriterSize(f, 64<<10), path: path, rate: rate, bank: float64(rate), at: now,
		log:  slog.Default(),
		line: make([]byte, 0, 512),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	return w
}

// RoutineWrite drains the source every Interval until Close.
func (w *Writer) RoutineWrite() {
	defer close(w.done)
	t := time.NewTicker(Interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case now := <-t.C:
			w.mu.Lock()
			w.drain(now)
			w.mu.Unlock()
		}
	}
}

// drain writes what the source holds, as the rate allows at now, and flushes the file.
func (w *Writer) drain(now time.Time) {
	if el := now.Sub(w.at); el > 0 {
		w.bank = min(w.bank+el.Seconds()*float64(w.rate), float64(w.rate))
		w.at = now
	}
	// Bounded: what the workers queue meanwhile waits for the next tick.
	for range 64 {
		n := w.src.ConnLogDrain(w.buf[:])
		if n == 0 {
			break
		}
		for i := range w.buf[:n] {
			w.write(&w.buf[i], now)
		}
	}
	if err := w.bw.Flush(); err != nil {
		w.failed(now, err)
	}
	w.warnLimited(now, false)
}

// warnLimited warns, at most every limitedEvery, that lines were dropped over the rate limit, with
// how many since the last warning; the counter connlog_rate_limited keeps the total.
// At Close (final) it warns of what is left however recent the last warning.
func (w *Writer) warnLimited(now time.Time, final bool) {
	if w.limited == 0 || (!final && !w.limitedAt.IsZero() && now.Sub(w.limitedAt) < limitedEvery) {
		return
	}
	w.limitedAt = now
	w.log.Warn("connection log: lines dropped over the rate limit; raise [log] connections_rate to keep them (connlog_rate_limited counts them)",
		"file", w.path, "connections_rate", w.rate, "dropped", w.limited)
	w.limited = 0
}

// write writes ev into the buffer if the rate allows.
func (w *Writer) write(ev *dataplane.ConnEvent, now time.Time) {
	if w.bank < 1 {
		w.c.RateLimited.Add(1)
		w.limited++
		return
	}
	w.bank--
	w.line = AppendLine(w.line[:0], ev, w.epoch)
	w.line = append(w.line, '\n')
	if _, err := w.bw.Write(w.line); err != nil {
		w.failed(now, err)
		return
	}
	w.c.Lines.Add(1)
}

// failed counts a refused write and logs it at most every 10 seconds. A bufio.Writer that failed
// keeps failing, so it is reset onto the file: the next lines try again.
func (w *Writer) failed(now time.Time, err error) {
	w.c.WriteErrors.Add(1)
	w.bw.Reset(w.f)
	if now.Sub(w.warn) >= 10*time.Second {
		w.warn = now
		slog.Error("connection log: write failed; lines are lost until it works again (connlog_write_errors counts them)",
			"file", w.path, "err", err)
	}
}

// Swap makes the writer write into f (opened by Open at path) from now on, at most rate lines a
// second, and closes the file it wrote to: a reload's new path, or the same path reopened after
// logrotate moved the file away. What was buffered goes to the old file first.
func (w *Writer) Swap(f *os.File, path string, rate int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.bw.Flush(); err != nil {
		w.c.WriteErrors.Add(1)
	}
	old := w.f
	w.f, w.path, w.rate = f, path, rate
	w.bank = min(w.bank, float64(rate))
	w.bw.Reset(f)
	if old != f {
		old.Close()
	}
}

// Stop stops the goroutine and writes what the source still holds (within the rate). Write
// and Close may follow.
func (w *Writer) Stop() {
	w.stopOnce.Do(func() {
		close(w.stop)
		<-w.done
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drain(time.Now())
}

// Write writes ev (within the rate), as the goroutine writes what it drains: for events that
// do not come through the source (dataplane.Engine.ConnLogRemaining).
func (w *Writer) Write(ev *dataplane.ConnEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.write(ev, time.Now())
}

// Close stops the writer (see Stop), flushes and closes the file.
func (w *Writer) Close() error {
	w.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnLimited(time.Now(), true) // what Write dropped since the last drain
	if err := w.bw.Flush(); err != nil {
		w.c.WriteErrors.Add(1)
	}
	return w.f.Close()
}

// Path returns the file the writer writes to.
func (w *Writer) Path() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.path
}

// AppendLine appends ev as a log line, without the newline, to b: logfmt key=value pairs, in this
// order (local only for a method with a local address; state to bytes_out for expired only):
//
//	time=2026-12-07T14:30:00.123Z event=expired proto=tcp client=198.18.0.10:40000 vip=198.18.1.1:80
//	real=198.18.2.1:8080 method=nat local=198.19.0.2:1025 state=TIME_WAIT reason=timeout
//	duration=1.234 packets_in=6 bytes_in=412 packets_out=4 bytes_out=2960 worker=0
//
// time is UTC, to the millisecond; duration is seconds from creation to the last packet; in is
// from the client, out back to it. epoch is the clock ev's times count from.
func AppendLine(b []byte, ev *dataplane.ConnEvent, epoch time.Time) []byte {
	b = append(b, "time="...)
	b = epoch.Add(time.Duration(ev.Time)).UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, " event="...)
	b = append(b, ev.Kind.String()...)
	b = append(b, " proto="...)
	b = appendProto(b, ev.Proto)
	b = appendAddr(append(b, " client="...), ev.Client, ev.CPort)
	b = appendAddr(append(b, " vip="...), ev.VIP, ev.VPort)
	b = appendAddr(append(b, " real="...), ev.Real, ev.RPort)
	b = append(b, " method="...)
	b = append(b, ev.Method.String()...)
	if ev.LPort != 0 || ev.Local != [16]byte{} {
		b = appendAddr(append(b, " local="...), ev.Local, ev.LPort)
	}
	if ev.Kind == dataplane.ConnExpired {
		b = append(b, " state="...)
		b = append(b, ev.State.String()...)
		b = append(b, " reason="...)
		b = append(b, ev.End.String()...)
		b = append(b, " duration="...)
		b = strconv.AppendFloat(b, time.Duration(ev.Last-ev.Created).Seconds(), 'f', 3, 64)
		b = strconv.AppendUint(append(b, " packets_in="...), ev.Packets[0], 10)
		b = strconv.AppendUint(append(b, " bytes_in="...), ev.Bytes[0], 10)
		b = strconv.AppendUint(append(b, " packets_out="...), ev.Packets[1], 10)
		b = strconv.AppendUint(append(b, " bytes_out="...), ev.Bytes[1], 10)
	}
	b = strconv.AppendUint(append(b, " worker="...), uint64(ev.Worker), 10)
	return b
}

func appendAddr(b []byte, a [16]byte, port uint16) []byte {
	return netip.AddrPortFrom(netip.AddrFrom16(a).Unmap(), port).AppendTo(b)
}

func appendProto(b []byte, p uint8) []byte {
	switch p {
	case 6:
		return append(b, "tcp"...)
	case 17:
		return append(b, "udp"...)
	case 1:
		return append(b, "icmp"...)
	case 58:
		return append(b, "ipv6-icmp"...)
	}
	return strconv.AppendUint(b, uint64(p), 10)
}
