//go:build linux

package daemon

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// lockTestName is an interface name no other test run (nor a govs on this host) claims; the
// locks are names only, the interface need not exist.
func lockTestName(s string) string { return fmt.Sprintf("t%d%s", os.Getpid(), s) }

// TestInterfaceLock: a govs claims its interfaces; a second claim of any of them is refused, naming
// the holder's pid and control socket, and claims nothing (its other interfaces stay free); close
// releases them.
func TestInterfaceLock(t *testing.T) {
	a, b, c := lockTestName("a"), lockTestName("b"), lockTestName("c")
	l, err := lockInterfaces([]string{a, b}, "/run/govs/first.sock")
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockInterfaces([]string{c, b}, "/run/govs/second.sock")
	want := fmt.Sprintf("interface %s is already served by another govs (pid %d, control socket /run/govs/first.sock) in this network namespace; stop it first", b, os.Getpid())
	if err == nil || err.Error() != want {
		t.Errorf("second claim: %v\nwant: %s", err, want)
	}
	// The refused claim let go of c, which it had claimed first.
	lc, err := lockInterfaces([]string{c}, "/run/govs/third.sock")
	if err != nil {
		t.Errorf("c after a refused claim: %v", err)
	} else {
		lc.close()
	}
	l.close()
	l.close() // Close may run twice (New's failure path, then the caller)
	l2, err := lockInterfaces([]string{a, b}, "/run/govs/second.sock")
	if err != nil {
		t.Fatalf("claim after close: %v", err)
	}
	l2.close()
}

// TestInterfaceLockProcessDeath: a govs killed without a chance to clean up (SIGKILL) leaves no
// claim behind.
func TestInterfaceLockProcessDeath(t *testing.T) {
	name := lockTestName("k")
	child := exec.Command(os.Args[0], "-test.run=^TestInterfaceLockChild$")
	child.Env = append(os.Environ(), "GOVS_LOCK_CHILD="+name)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		child.Process.Kill()
		child.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "locked") {
				ready <- sc.Text()
				return
			}
		}
		close(ready)
	}()
	select {
	case line, ok := <-ready:
		if !ok {
			t.Fatal("the child exited without claiming the interface")
		}
		t.Logf("child: %s", line)
	case <-time.After(10 * time.Second):
		t.Fatal("the child did not claim the interface within 10s")
	}
	_, err = lockInterfaces([]string{name}, "/run/govs/parent.sock")
	want := fmt.Sprintf("another govs (pid %d, control socket /run/govs/child.sock)", child.Process.Pid)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("claim while the child holds it: %v; want it to name %s", err, want)
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	l, err := lockInterfaces([]string{name}, "/run/govs/parent.sock")
	if err != nil {
		t.Fatalf("claim after the holder was killed: %v", err)
	}
	l.close()
}

// TestInterfaceLockChild is the child process of TestInterfaceLockProcessDeath: it claims the
// interface it is given and waits to be killed.
func TestInterfaceLockChild(t *testing.T) {
	name := os.Getenv("GOVS_LOCK_CHILD")
	if name == "" {
		t.Skip("the child process of TestInterfaceLockProcessDeath")
	}
	if _, err := lockInterfaces([]string{name}, "/run/govs/child.sock"); err != nil {
		t.Fatal(err)
	}
	fmt.Println("locked", name)
	time.Sleep(30 * time.Second) // bounded: the parent kills it long before
	t.Fatal("not killed within 30s")
}
