package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// cpuTimes are one CPU's cumulative jiffies from /proc/stat, split into busy and idle.
type cpuTimes struct{ Busy, Idle uint64 }

// parseProcStat returns the per-CPU lines ("cpu0", "cpu1", ...) of /proc/stat. Idle is idle
// plus iowait; busy is everything else except guest time, which user already includes.
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
			if i == 3 || i == 4 {
				t.Idle += v
			} else {
				t.Busy += v
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

// busyPercent returns how busy cpu was between two readings, in percent, or -1 when unknown.
func busyPercent(before, after map[int]cpuTimes, cpu int) float64 {
	b, ok1 := before[cpu]
	a, ok2 := after[cpu]
	if !ok1 || !ok2 || a.Busy < b.Busy || a.Idle < b.Idle {
		return -1
	}
	busy, idle := a.Busy-b.Busy, a.Idle-b.Idle
	if busy+idle == 0 {
		return -1
	}
	return 100 * float64(busy) / float64(busy+idle)
}

// parseSoftnet returns the "dropped" column (the second) of /proc/net/softnet_stat per CPU. The
// CPU is the 13th column where the kernel prints it (Linux 5.10+), else the line number.
func parseSoftnet(b []byte) (map[int]uint64, error) {
	m := make(map[int]uint64)
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
		d, err := strconv.ParseUint(f[1], 16, 64)
		if err != nil {
			return nil, fmt.Errorf("failed to parse softnet_stat line %d: dropped %q: %w", i+1, f[1], err)
		}
		m[cpu] = d
	}
	return m, nil
}
