//go:build !linux

package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"sync/atomic"

	"github.com/govs/govs/lab"
)

var errNotLinux = fmt.Errorf("benchlab needs Linux (network namespaces, AF_PACKET), not %s", runtime.GOOS)

func pinProcess(cpu int) error { return errNotLinux }

func flood(ctx context.Context, cfg floodConfig, sent *atomic.Uint64) (floodStats, error) {
	return floodStats{}, errNotLinux
}

func linkCounters(ns *lab.NS, ifname string) (rx, tx, rxDropped uint64, err error) {
	return 0, 0, 0, errNotLinux
}

func readSoftnet() (map[int]softnetStat, error) { return nil, errNotLinux }

func setPdeathsig(cmd *exec.Cmd) {}

func neighMAC(topo *lab.Topology) (net.HardwareAddr, error) { return nil, errNotLinux }

func processCtxSwitches(int) (uint64, error) { return 0, errNotLinux }

func processUserTicks(int) (uint64, error) { return 0, errNotLinux }
