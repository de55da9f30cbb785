package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuTimes are one CPU's cumulative jiffies from /proc/stat, split into busy, idle and stolen.
// Kernel is the part of busy spent in kernel mode (system, irq, softirq), User the rest.
type cpuTimes struct{ Busy, Idle, Steal, Kernel, User uint64 }

// parseProcStat returns the per-CPU lines ("cpu0", "cpu1", ...) of /proc/stat. Idle is idle
// plus iowait; steal is time the hypervisor ran something else while this virtual CPU wanted to
// run, neither the balancer's work nor idle; busy is everything else except guest time, which
// user already includes.
func parseProcStat(b []byte) (map[int]cpuTimes, error) {
	m := make(map[int]cpuTimes)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		cpu, err := strconv.Atoi(f[0][3:])
		if err != nil || cpu < 0 {
			return nil, fmt.Errorf("failed to parse /proc/stat line %q: bad CPU number", line)
		}
		var t cpuTimes
		// user nice system idle iowait irq softirq steal guest guest_nice
		for i, s := range f[1:] {
			if i >= 8 {
				break
			}
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("failed to parse /proc/stat line %q: field %d: %w", line, i+1, err)
			}
			switch i {
			case 3, 4:
				t.Idle += v
			case 7:
				t.Steal += v
			default:
				t.Busy += v
				if i == 0 || i == 1 {
					t.User += v
				} else {
					t.Kernel += v
				}
			}
		}
		m[cpu] = t
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("failed to parse /proc/stat: no per-CPU lines")
	}
	return m, nil
}

// readCPUTimes reads /proc/stat (CPU times are not per namespace).
func readCPUTimes() (map[int]cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, fmt.Errorf("failed to read CPU times: %w", err)
	}
	return parseProcStat(b)
}

// usPerPacket is the balancer core's time per delivered packet in microseconds: busy percent
// of one core divided by the delivered rate. false when either is unknown or zero.
func usPerPacket(busyPercent, pps float64) (float64, bool) {
	if busyPercent < 0 || pps <= 0 {
		return 0, false
	}
	return busyPercent / 100 / pps * 1e6, true
}

// parseCtxSwitches returns voluntary plus nonvoluntary context switches from one
// /proc/PID/task/TID/status file.
func parseCtxSwitches(b []byte) (uint64, error) {
	var n uint64
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "voluntary_ctxt_switches" && k != "nonvoluntary_ctxt_switches") {
			continue
		}
		c, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("failed to parse %q: %w", line, err)
		}
		n += c
		found++
	}
	if found != 2 {
		return 0, fmt.Errorf("failed to find both context switch counts in a status file")
	}
	return n, nil
}

// userHZ is the unit of /proc/stat: 1/100 s on every Linux architecture govs runs on.
const userHZ = 100

// busyPercent returns how busy cpu was between two readings elapsed apart, in percent of the
// wall-clock time, or -1 when unknown: the time it was neither idle nor stolen by the hypervisor.
//
// It does not add up the busy columns: with tick-based accounting and an idle CPU's tick stopped
// (NO_HZ_IDLE without IRQ_TIME_ACCOUNTING, as on the lab machine), interrupt and softirq work
// that runs while the CPU is otherwise idle is billed to no column at all, while the idle column
// is measured exactly. The kernel's DNAT does all its work that way, and summing the columns
// showed it less than half as busy as it was.
func busyPercent(before, after map[int]cpuTimes, cpu int, elapsed time.Duration) float64 {
	b, ok1 := before[cpu]
	a, ok2 := after[cpu]
	if !ok1 || !ok2 || a.Idle < b.Idle || a.Steal < b.Steal || elapsed <= 0 {
		return -1
	}
	wall := elapsed.Seconds() * userHZ
	notBusy := float64(a.Idle-b.Idle) + float64(a.Steal-b.Steal)
	return 100 * min(1, max(0, 1-notBusy/wall))
}

// kernelPercent returns the share of the wall-clock time cpu's kernel-mode columns (system,
// irq, softirq) grew between two readings, or -1 when unknown. Unlike busyPercent it loses the
// softirq work an idle CPU does (see there), but it does not count other processes' user time:
// on a machine where other work keeps the CPU busy (and so never idle, which also makes the
// softirq ticks land in their column) it is the better estimate of the network's share.
func kernelPercent(before, after map[int]cpuTimes, cpu int, elapsed time.Duration) float64 {
	b, ok1 := before[cpu]
	a, ok2 := after[cpu]
	if !ok1 || !ok2 || a.Kernel < b.Kernel || elapsed <= 0 {
		return -1
	}
	return 100 * float64(a.Kernel-b.Kernel) / (elapsed.Seconds() * userHZ)
}

// softnetStat is one CPU's line of /proc/net/softnet_stat: the frames its receive backlog dropped
// because it was full (netdev_max_backlog), and the inter-processor interrupts it took to start
// processing frames another CPU steered to it by RPS (received_rps).
type softnetStat struct{ Dropped, ReceivedRPS uint64 }

// parseSoftnet returns /proc/net/softnet_stat per CPU: "dropped" is the second column and
// received_rps the tenth (absent on kernels before 2.6.35: then 0). The CPU is the 13th column
// where the kernel prints it (Linux 5.10+), else the line number.
func parseSoftnet(b []byte) (map[int]softnetStat, error) {
	m := make(map[int]softnetStat)
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("failed to parse softnet_stat line %d %q", i+1, line)
		}
		cpu := i
		if len(f) >= 13 {
			c, err := strconv.ParseUint(f[12], 16, 32)
			if err != nil {
				return nil, fmt.Errorf("failed to parse softnet_stat line %d: CPU %q: %w", i+1, f[12], err)
			}
			cpu = int(c)
		}
		var st softnetStat
		var err error
		if st.Dropped, err = strconv.ParseUint(f[1], 16, 64); err != nil {
			return nil, fmt.Errorf("failed to parse softnet_stat line %d: dropped %q: %w", i+1, f[1], err)
		}
		if len(f) >= 10 {
			if st.ReceivedRPS, err = strconv.ParseUint(f[9], 16, 64); err != nil {
				return nil, fmt.Errorf("failed to parse softnet_stat line %d: received_rps %q: %w", i+1, f[9], err)
			}
		}
		m[cpu] = st
	}
	return m, nil
}

// parseUtime returns utime, the 14th field of a /proc/PID/stat line (the 2nd, the command
// name in parentheses, may hold spaces).
func parseUtime(b []byte) (uint64, error) {
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("failed to parse /proc/PID/stat %q", s)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 12 {
		return 0, fmt.Errorf("failed to parse /proc/PID/stat %q: too few fields", s)
	}
	return strconv.ParseUint(f[11], 10, 64) // field 14 overall
}
