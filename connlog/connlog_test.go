package connlog

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govs/govs/conntrack"
	"github.com/govs/govs/dataplane"
)

func addr(s string) ([16]byte, uint16) {
	ap := netip.MustParseAddrPort(s)
	return ap.Addr().As16(), ap.Port()
}

func event(kind dataplane.ConnEventKind, client string) dataplane.ConnEvent {
	ev := dataplane.ConnEvent{Kind: kind, Proto: 6, Method: dataplane.MethodNAT, State: conntrack.StateSynRecv, Worker: 1}
	ev.Client, ev.CPort = addr(client)
	ev.VIP, ev.VPort = addr("198.18.1.1:80")
	ev.Real, ev.RPort = addr("198.18.2.1:8080")
	return ev
}

func TestAppendLine(t *testing.T) {
	epoch := time.Date(2026, 12, 7, 14, 30, 0, 0, time.UTC)
	created := event(dataplane.ConnCreated, "198.18.0.10:40000")
	created.Time = int64(120 * time.Millisecond)
	expired := event(dataplane.ConnExpired, "[2001:2::10]:40000")
	expired.VIP, expired.VPort = addr("[2001:2::1]:443")
	expired.Real, expired.RPort = addr("[2001:2:0:2::1]:443")
	expired.Local, expired.LPort = addr("[2001:2:0:3::2]:1025")
	expired.Proto, expired.State, expired.End = 17, conntrack.StateUDP, dataplane.EndTimeout
	expired.Time, expired.Created, expired.Last = int64(3*time.Second), int64(time.Second), int64(2234*time.Millisecond)
	expired.Packets, expired.Bytes = [2]uint64{6, 4}, [2]uint64{412, 2960}
	for _, tt := range []struct {
		ev   dataplane.ConnEvent
		want string
	}{
		{created, "time=2026-12-07T14:30:00.120Z event=created proto=tcp client=198.18.0.10:40000 vip=198.18.1.1:80 real=198.18.2.1:8080 method=nat worker=1"},
		{expired, "time=2026-12-07T14:30:03.000Z event=expired proto=udp client=[2001:2::10]:40000 vip=[2001:2::1]:443 real=[2001:2:0:2::1]:443 method=nat local=[2001:2:0:3::2]:1025 state=UDP reason=timeout duration=1.234 packets_in=6 bytes_in=412 packets_out=4 bytes_out=2960 worker=1"},
	} {
		if got := string(AppendLine(nil, &tt.ev, epoch)); got != tt.want {
			t.Errorf("line:\n got %s\nwant %s", got, tt.want)
		}
	}
}

// source is a Source of queued events.
type source struct{ evs []dataplane.ConnEvent }

func (s *source) ConnLogDrain(out []dataplane.ConnEvent) int {
	n := copy(out, s.evs)
	s.evs = s.evs[n:]
	return n
}

func (s *source) add(n int) {
	for range n {
		s.evs = append(s.evs, event(dataplane.ConnCreated, "198.18.0.10:40000"))
	}
}

func lines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// rateWriter is a writer of 100 lines a second into a new file (path), from src, at t0.
func rateWriter(t *testing.T) (path string, src *source, c *Counters, w *Writer, t0 time.Time) {
	path = filepath.Join(t.TempDir(), "c.log")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	src, c, t0 = &source{}, &Counters{}, time.Unix(1000, 0)
	return path, src, c, newWriter(f, path, 100, src, t0, c, t0), t0
}

// TestWriterRate: the writer writes at most rate lines a second (a second's worth at once),
// drains everything regardless, and counts what it held back.
func TestWriterRate(t *testing.T) {
	path, src, c, w, t0 := rateWriter(t)
	src.add(1000) // more than a drain call takes (256 per round) and than the rate allows
	w.drain(t0)
	if len(src.evs) != 0 || lines(t, path) != 100 || c.Lines.Load() != 100 || c.RateLimited.Load() != 900 {
		t.Fatalf("left %d, %d lines in the file, counters %d written %d limited; want 0, 100, 100, 900",
			len(src.evs), lines(t, path), c.Lines.Load(), c.RateLimited.Load())
	}
	src.add(100)
	w.drain(t0.Add(500 * time.Millisecond)) // half a second earns 50
	if lines(t, path) != 150 || c.RateLimited.Load() != 950 {
		t.Fatalf("%d lines, %d limited; want 150 and 950", lines(t, path), c.RateLimited.Load())
	}
	src.add(300)
	w.drain(t0.Add(time.Hour)) // a long quiet earns one second's worth, no more
	if lines(t, path) != 250 || c.RateLimited.Load() != 1150 {
		t.Fatalf("%d lines, %d limited; want 250 and 1150", lines(t, path), c.RateLimited.Load())
	}
}

// TestWriterRateWarns: lines dropped over the rate limit are logged as a warning with their
// count, at most every limitedEvery, the next warning with those dropped since the last one.
func TestWriterRateWarns(t *testing.T) {
	path, src, c, w, t0 := rateWriter(t)
	var logged strings.Builder
	w.log = slog.New(slog.NewTextHandler(&logged, nil))
	warnings := func() []string {
		var out []string
		for _, l := range strings.Split(logged.String(), "\n") {
			if strings.Contains(l, "level=WARN") && strings.Contains(l, "over the rate limit") {
				out = append(out, l)
			}
		}
		return out
	}

	src.add(100) // within the rate: no warning
	w.drain(t0)
	if got := warnings(); len(got) != 0 {
		t.Fatalf("warnings with nothing dropped: %q", got)
	}
	src.add(30)
	w.drain(t0.Add(100 * time.Millisecond)) // earns 10: 20 dropped
	got := warnings()
	if len(got) != 1 || !strings.Contains(got[0], "dropped=20") || !strings.Contains(got[0], "connections_rate=100") ||
		!strings.Contains(got[0], "file="+path) {
		t.Fatalf("after 20 lines dropped, warnings %q; want one with dropped=20, connections_rate=100 and the file", got)
	}
	src.add(50)
	w.drain(t0.Add(200 * time.Millisecond)) // earns 10: 40 more dropped, within limitedEvery
	if got := warnings(); len(got) != 1 {
		t.Fatalf("a second warning within %s: %q", limitedEvery, got)
	}
	src.add(5)
	w.drain(t0.Add(limitedEvery + time.Second)) // nothing dropped now: the 40 are still told
	got = warnings()
	if len(got) != 2 || !strings.Contains(got[1], "dropped=40") {
		t.Fatalf("after %s, warnings %q; want a second one with dropped=40", limitedEvery, got)
	}
	w.drain(t0.Add(3 * limitedEvery)) // nothing new dropped: no warning
	if got := warnings(); len(got) != 2 || c.RateLimited.Load() != 60 {
		t.Fatalf("warnings %q, %d rate limited; want still 2 warnings and 60", got, c.RateLimited.Load())
	}
	// The drains in between (every 20 ms in govs) held the second warning back; they are not
	// warnings suppressed: the count of dropped lines is the news.
	for _, l := range warnings() {
		if strings.Contains(l, "suppressed") {
			t.Errorf("a warning says lines were suppressed: %s", l)
		}
	}
}

// TestWriterSwap: after Swap the lines go to the new file (a reload's path, or the same path
// reopened after logrotate moved the file), and Close writes what is left.
func TestWriterSwap(t *testing.T) {
	dir := t.TempDir()
	first, second := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	f, err := Open(first)
	if err != nil {
		t.Fatal(err)
	}
	src, c := &source{}, &Counters{}
	w := newWriter(f, first, 1000, src, time.Now(), c, time.Now())
	f2, err := Open(second)
	if err != nil {
		t.Fatal(err)
	}
	src.add(3)
	w.drain(time.Now())
	src.add(2)
	w.Swap(f2, second, 1000)
	go w.RoutineWrite() // as New does; Close stops it
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if lines(t, first) != 3 || lines(t, second) != 2 || w.Path() != second {
		t.Fatalf("%d and %d lines, path %s; want 3 in %s, 2 in %s", lines(t, first), lines(t, second), w.Path(), first, second)
	}
}

func TestOpenError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "c.log")
	_, err := Open(path)
	if err == nil || !strings.HasPrefix(err.Error(), "cannot open "+path+" for appending: no such file or directory; ") {
		t.Fatalf("error %v", err)
	}
}
