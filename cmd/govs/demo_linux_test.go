package main

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStartTiedOutlivesCallerThread: the demo's govs keeps running when the OS thread that called
// startTied ends, as threads locked in a namespace by lab's doInNetns do; with the parent-death
// signal set on a plain cmd.Start, that thread's end sent govs SIGTERM mid-demo.
func TestStartTiedOutlivesCallerThread(t *testing.T) {
	if _, err := exec.LookPath("sleep"); err != nil {
		t.Skip("no sleep command")
	}
	type result struct {
		p     *tiedProc
		err   error
		retry bool
	}
	release := make(chan struct{})
	defer close(release)
	var r result
	for r = (result{retry: true}); r.retry; {
		res := make(chan result, 1)
		go func() {
			// Never unlocked: the runtime ends this thread when the goroutine returns.
			runtime.LockOSThread()
			if syscall.Gettid() == os.Getpid() {
				// The main thread does not end with its goroutine; it is held meanwhile so that
				// the next try runs on another.
				res <- result{retry: true}
				<-release
				runtime.UnlockOSThread()
				return
			}
			p, err := startTied(exec.Command("sleep", "30"))
			res <- result{p: p, err: err}
		}()
		r = <-res
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.p.stop(time.Second)
	select {
	case <-r.p.done:
		t.Fatalf("the child ended (%v) when the thread that started it ended", r.p.err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := r.p.stop(5 * time.Second); err == nil || !strings.Contains(err.Error(), "signal: terminated") {
		t.Fatalf("stop = %v, want the child ended by SIGTERM", err)
	}
}
