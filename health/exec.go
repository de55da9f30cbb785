package health

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Environment variables a check command and a notify command find, besides the daemon's own.
const (
	EnvVirtualServer = "GOVS_VIRTUAL_SERVER"      // "tcp/198.18.0.100:80"
	EnvRealServer    = "GOVS_REAL_SERVER"         // "198.19.0.11:80", as configured
	EnvAddress       = "GOVS_REAL_SERVER_ADDRESS" // "198.19.0.11"
	EnvPort          = "GOVS_REAL_SERVER_PORT"    // the port to check: Spec.Port, else the real server's
	EnvEvent         = "GOVS_EVENT"               // notify only: "up" or "down"
	EnvPrevious      = "GOVS_PREVIOUS_STATE"      // notify only: "unknown", "up" or "down"
	EnvReason        = "GOVS_REASON"              // notify only: the result that decided, "" on success
)

func targetEnv(t Target, port uint16) []string {
	return append(os.Environ(),
		EnvVirtualServer+"="+t.Service,
		EnvRealServer+"="+t.Server.String(),
		EnvAddress+"="+t.Server.Addr().String(),
		EnvPort+"="+strconv.Itoa(int(port)),
	)
}

// execChecker runs a program: exit status 0 is up. It runs in its own process group, which is
// killed whole when the check's time is up, so a script's children (a curl it started, say) do
// not outlive it.
type execChecker struct {
	argv []string
	env  []string
}

func newExecChecker(spec Spec, t Target, addr netip.AddrPort) *execChecker {
	return &execChecker{argv: spec.Command, env: targetEnv(t, addr.Port())}
}

func (c *execChecker) Check(ctx context.Context) error {
	return runGroup(ctx, c.argv, c.env)
}

// outputLimit bounds how much of a command's output is kept for its message.
const outputLimit = 512

// waitDelay bounds how long Wait waits for the output pipe after the command exited: a
// background child it left may hold the pipe open.
const waitDelay = 100 * time.Millisecond

// runGroup runs argv in a new process group with env and returns nil when it exits with status
// 0. When ctx ends first it kills the whole group with SIGKILL and says so.
func runGroup(ctx context.Context, argv, env []string) error {
	var out capped
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %v", argv[0], unwrapSyscall(err))
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return exitError(argv[0], cmd, err, out.firstLine())
	case <-ctx.Done():
		// The group's id is the leader's pid, which the kernel does not hand out again while any
		// member of the group lives; if the leader has just exited, this still reaches the
		// children it left, and when none are left it finds nothing (pids are not reused at once).
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("%s did not finish in time; its process group was killed", argv[0])
		}
		return fmt.Errorf("%s: stopped: %v", argv[0], ctx.Err())
	}
}

func exitError(name string, cmd *exec.Cmd, err error, output string) error {
	ps := cmd.ProcessState
	switch {
	case ps == nil:
		return fmt.Errorf("%s: %v", name, err)
	case ps.Success() && (err == nil || errors.Is(err, exec.ErrWaitDelay)):
		return nil
	}
	var why string
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		why = "killed by signal " + ws.Signal().String()
	} else {
		why = "exited with status " + strconv.Itoa(ps.ExitCode())
	}
	if output != "" {
		return fmt.Errorf("%s %s: %s", name, why, output)
	}
	return fmt.Errorf("%s %s", name, why)
}

// capped keeps the first outputLimit bytes written to it and discards the rest.
type capped struct {
	mu  sync.Mutex
	buf []byte
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := outputLimit - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// firstLine returns the first non-blank line of the output, for a one-line message.
func (c *capped) firstLine() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, line := range strings.Split(string(c.buf), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			return strconv.QuoteToGraphic(line)
		}
	}
	return ""
}
