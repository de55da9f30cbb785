package health

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitGone waits until pid has exited: no such process, or a zombie (nobody may reap a
// reparented child in a container). Bounded: a process that lives on fails the test.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			return
		}
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
			// pid (comm) S ...: the state follows the last ')'.
			if i := strings.LastIndexByte(string(b), ')'); i > 0 && strings.HasPrefix(string(b[i:]), ") Z") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestExecTimeoutKillsGroup runs a check script that starts a child and outlives the timeout:
// the check fails as timed out, and both the script and its child are gone.
func TestExecTimeoutKillsGroup(t *testing.T) {
	dir := t.TempDir()
	script := writeScript(t, dir, "check", `sleep 300 &
echo $! > "$0.child"
echo $$ > "$0.leader"
sleep 300
`)
	spec := Spec{Kind: KindExec, Interval: time.Second, Timeout: 300 * time.Millisecond, Rise: 1, Fall: 1, Command: []string{script}}
	c, err := NewChecker(spec, tA, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), spec.Timeout)
	defer cancel()
	err = c.Check(ctx)
	if err == nil || !strings.Contains(err.Error(), "did not finish in time; its process group was killed") {
		t.Fatalf("Check = %v, want a timeout that killed the process group", err)
	}
	leader := readPid(t, waitFile(t, script+".leader", "\n", 1))
	child := readPid(t, waitFile(t, script+".child", "\n", 1))
	waitGone(t, leader)
	waitGone(t, child)
}

func TestExecExitStatus(t *testing.T) {
	dir := t.TempDir()
	ok := writeScript(t, dir, "ok", "exit 0\n")
	fail := writeScript(t, dir, "fail", "echo\necho '  backend says no  '\necho more\nexit 3\n")
	// A child left holding the output open must not hold the check up past its exit.
	leaves := writeScript(t, dir, "leaves", "sleep 300 &\necho $! > \"$0.child\"\nexit 0\n")
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{ok}, ""},
		{[]string{fail}, fail + ` exited with status 3: "backend says no"`},
		{[]string{leaves}, ""},
		{[]string{dir + "/missing"}, dir + "/missing: no such file or directory"},
	} {
		spec := Spec{Kind: KindExec, Interval: time.Minute, Timeout: 30 * time.Second, Rise: 1, Fall: 1, Command: tc.argv}
		c, err := NewChecker(spec, tA, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = c.Check(context.Background())
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: Check = %v, want up", tc.argv[0], err)
		case tc.want != "" && (err == nil || err.Error() != tc.want):
			t.Errorf("%s: Check = %v, want %q", tc.argv[0], err, tc.want)
		}
	}
	if b, err := os.ReadFile(leaves + ".child"); err == nil {
		_ = syscall.Kill(readPid(t, string(b)), syscall.SIGKILL)
	}
}
