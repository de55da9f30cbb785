package ha

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHeartbeatRoundTrip(t *testing.T) {
	s := newSigner(key)
	for _, h := range []Heartbeat{
		{Node: addrA, Priority: 200, State: StateActive, Seq: 1, Time: 1},
		{Node: netip.MustParseAddrPort("[2001:2::1]:8405"), Priority: 0, State: StateFault, Seq: 1<<64 - 1, Time: -1},
	} {
		var b [HeartbeatSize]byte
		msg := s.marshal(b[:], &h)
		var got Heartbeat
		if r := s.unmarshal(msg, &got); r != 0 || got != h {
			t.Errorf("round trip of %+v = %+v, %v", h, got, r)
		}
		for i := range msg {
			bad := bytes.Clone(msg)
			bad[i] ^= 0x01
			if r := s.unmarshal(bad, &got); r == 0 {
				t.Errorf("flipping a bit of byte %d went unnoticed", i)
			}
		}
	}
}

// FuzzHeartbeat: unmarshal never panics, and whatever it accepts marshals back to the same bytes.
func FuzzHeartbeat(f *testing.F) {
	s := newSigner(key)
	var b [HeartbeatSize]byte
	f.Add(bytes.Clone(s.marshal(b[:], &Heartbeat{Node: addrA, Priority: 100, State: StateBackup, Seq: 7, Time: 9})))
	f.Add([]byte("GVHA"))                          // truncated
	f.Add(make([]byte, HeartbeatSize))             // zeros
	f.Add(bytes.Repeat([]byte{0xff}, maxDatagram)) // too long
	f.Fuzz(func(t *testing.T, msg []byte) {
		var h Heartbeat
		if s.unmarshal(msg, &h) != 0 {
			return
		}
		var out [HeartbeatSize]byte
		if again := s.marshal(out[:], &h); !bytes.Equal(again, msg) {
			t.Errorf("accepted %x but it marshals to %x", msg, again)
		}
	})
}

func TestReadKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	good := write("good", "c2VjcmV0IHNlY3JldCBzZWNyZXQgc2VjcmV0Cg==\n", 0o600)
	k, err := ReadKey(good)
	if err != nil || string(k) != "c2VjcmV0IHNlY3JldCBzZWNyZXQgc2VjcmV0Cg==" {
		t.Errorf("ReadKey(good) = %q, %v", k, err)
	}
	if _, err := ReadKey(write("ro", strings.Repeat("k", 32), 0o400)); err != nil {
		t.Errorf("mode 0400 refused: %v", err)
	}
	for _, tt := range []struct {
		path, want string
	}{
		{write("group", strings.Repeat("k", 32), 0o640), "chmod 600"},
		{write("world", strings.Repeat("k", 32), 0o604), "chmod 600"},
		{write("short", "short\n", 0o600), "at least 16"},
		{filepath.Join(dir, "missing"), "no such file"},
		{dir, "not a regular file"},
	} {
		if _, err := ReadKey(tt.path); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ReadKey(%s) = %v, want an error saying %q", filepath.Base(tt.path), err, tt.want)
		}
	}
}
