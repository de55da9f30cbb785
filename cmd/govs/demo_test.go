package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/govs/govs/control"
)

// TestWhileRunningGovsExits: traffic stops as soon as govs exits, and the demo fails saying so.
func TestWhileRunningGovsExits(t *testing.T) {
	p, err := startTied(exec.Command("sh", "-c", "sleep 0.1; exit 3"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = whileRunning(context.Background(), p, func(ctx context.Context) {
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Second):
		}
	})
	if err == nil || !strings.Contains(err.Error(), "govs exited while the demo was running") {
		t.Fatalf("whileRunning = %v, want govs exited", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("whileRunning returned after %v, want at once when govs exits", d)
	}
	if err := p.stop(time.Second); err == nil || err.Error() != "exit status 3, before the demo stopped it" {
		t.Fatalf("stop = %v, want exit status 3 before the demo stopped it", err)
	}

	// A govs that runs throughout lets the traffic finish.
	p, err = startTied(exec.Command("sleep", "30"))
	if err != nil {
		t.Fatal(err)
	}
	ran := false
	if err := whileRunning(context.Background(), p, func(ctx context.Context) { ran = ctx.Err() == nil }); err != nil || !ran {
		t.Fatalf("whileRunning = %v (ran %v), want nil", err, ran)
	}
	if err := p.stop(5 * time.Second); err == nil || !strings.Contains(err.Error(), "signal: terminated") {
		t.Fatalf("stop = %v, want the child ended by SIGTERM", err)
	}
}

// fakeStatus serves a status whose Config the test changes.
type fakeStatus struct {
	mu     sync.Mutex
	config string
}

func (f *fakeStatus) Status() control.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return control.Status{Ready: true, Config: f.config}
}

// TestWaitReadyOwnGovs: waitReady accepts only the govs running the demo's own configuration; a
// concurrent demo's govs on the shared socket is named as such, at once.
func TestWaitReadyOwnGovs(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "demo.sock")
	own := filepath.Join(dir, "govs-demo-1", "govs.toml")
	st := &fakeStatus{config: own}
	srv, err := control.NewServer(sock, st)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	never := make(chan struct{})
	if err := waitReady(sock, own, never, 5*time.Second); err != nil {
		t.Fatalf("waitReady on its own govs: %v", err)
	}

	start := time.Now()
	err = waitReady(sock, filepath.Join(dir, "govs-demo-2", "govs.toml"), never, 5*time.Second)
	want := "another govs demo is running (socket " + sock + "); wait for it to end"
	if err == nil || err.Error() != want {
		t.Fatalf("waitReady on another demo's govs = %v, want %q", err, want)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("waitReady took %v to see another demo's govs, want at once", d)
	}
	if err := otherGovs(sock, ""); err == nil || err.Error() != want {
		t.Fatalf("otherGovs = %v, want %q", err, want)
	}

	// Our own govs exited (the socket was taken): the other demo is named too.
	exited := make(chan struct{})
	close(exited)
	if err := waitReady(sock, filepath.Join(dir, "govs-demo-2", "govs.toml"), exited, 5*time.Second); err == nil || err.Error() != want {
		t.Fatalf("waitReady after govs exited = %v, want %q", err, want)
	}

	st.mu.Lock()
	st.config = "/etc/govs/govs.toml"
	st.mu.Unlock()
	if err := otherGovs(sock, ""); err == nil || !strings.Contains(err.Error(), "another govs (configuration /etc/govs/govs.toml) serves the demo's control socket") {
		t.Fatalf("otherGovs with a non-demo govs = %v", err)
	}
	srv.Close()
	if err := otherGovs(sock, ""); err != nil {
		t.Fatalf("otherGovs with nothing on the socket = %v, want nil", err)
	}
}
