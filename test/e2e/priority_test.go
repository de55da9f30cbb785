//go:build linux

package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/govs/govs/lab/labtest"
)

// TestWorkerPriority runs govs with [dataplane] worker_priority: each worker thread runs
// SCHED_FIFO at that priority while govs's other threads stay under the normal scheduler, and
// HTTP and UDP through the VIP are answered.
func TestWorkerPriority(t *testing.T) {
	labtest.RequireRoot(t)
	s := newTwoServiceSetup(t, "nat", "govs-prio", "worker_priority = 3\n")
	topo := s.topo
	g := startGovsEnv(t, topo, s.cfg, nil)
	defer g.stop()
	s.singleConn(t, 50, 0, nil)

	fifo, normal := 0, 0
	for _, p := range threadPolicies(t, g.cmd.Process.Pid) {
		switch p {
		case "1/3": // SCHED_FIFO, priority 3
			fifo++
		case "0/0": // SCHED_OTHER
			normal++
		default:
			t.Errorf("a govs thread runs with policy/priority %s, want 1/3 (a worker) or 0/0", p)
		}
	}
	if fifo != 2 || normal == 0 {
		t.Errorf("%d threads SCHED_FIFO and %d normal, want the 2 workers FIFO and the rest normal", fifo, normal)
	}
}

// threadPolicies returns "policy/rt_priority" (fields 41 and 40 of /proc/PID/task/TID/stat) of every
// thread of process pid.
func threadPolicies(t *testing.T, pid int) []string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/stat")
		if err != nil {
			continue // the thread ended
		}
		// Fields after the command's closing parenthesis start at field 3.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 39 {
			t.Fatalf("short %s/%s/stat: %q", dir, e.Name(), b)
		}
		if _, err := strconv.Atoi(f[38]); err != nil {
			t.Fatalf("policy field of %s/%s/stat: %q", dir, e.Name(), f[38])
		}
		out = append(out, f[38]+"/"+f[37])
	}
	return out
}
