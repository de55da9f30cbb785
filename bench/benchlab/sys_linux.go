//go:build linux

package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/govs/govs/lab"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// pinProcess confines every thread of this process to cpu. Threads created later inherit the
// affinity of the thread that creates them, so pinning all existing ones (twice, to catch a
// thread born during the first pass) pins the process for good: the in-process real servers
// and the namespace helper threads then stay off the balancer's CPU.
func pinProcess(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	for pass := 0; pass < 2; pass++ {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("failed to list this process's threads: %w", err)
		}
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("failed to pin thread %d to CPU %d: %w", tid, cpu, os.NewSyscallError("sched_setaffinity", err))
			}
		}
	}
	return nil
}

// flood sends cfg.Frames round-robin on an AF_PACKET socket with sendmmsg(2) from a thread
// pinned to cfg.CPU inside cfg.NS, for cfg.Duration or until ctx ends. sent is updated after
// every batch so a caller can sample the rate while the flood runs.
//
// PACKET_QDISC_BYPASS hands frames straight to the driver (packet(7)): a veth has no queue to
// shape, and the qdisc lock would only add cost to the generator.
func flood(ctx context.Context, cfg floodConfig, sent *atomic.Uint64) (floodStats, error) {
	var st floodStats
	if len(cfg.Frames) == 0 || cfg.Batch < 1 {
		return st, fmt.Errorf("failed to flood: no frames or batch < 1")
	}
	err := cfg.NS.Do(func() error {
		var set unix.CPUSet
		set.Set(cfg.CPU)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("failed to pin the generator to CPU %d: %w", cfg.CPU, os.NewSyscallError("sched_setaffinity", err))
		}
		ifi, err := net.InterfaceByName(cfg.Iface)
		if err != nil {
			return fmt.Errorf("failed to find %s: %w", cfg.Iface, err)
		}
		// Protocol 0: this socket receives nothing, so the flood does not loop back into it.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("failed to open an AF_PACKET socket: %w", os.NewSyscallError("socket", err))
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
			return fmt.Errorf("failed to bind to %s: %w", cfg.Iface, os.NewSyscallError("bind", err))
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
			return fmt.Errorf("failed to set PACKET_QDISC_BYPASS: %w", os.NewSyscallError("setsockopt", err))
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 8<<20) // best effort

		sll := unix.RawSockaddrLinklayer{
			Family:   unix.AF_PACKET,
			Protocol: htons(unix.ETH_P_IP),
			Ifindex:  int32(ifi.Index),
			Halen:    6,
		}
		copy(sll.Addr[:], cfg.Frames[0][0:6])
		n := len(cfg.Frames)
		iovs := make([]unix.Iovec, n)
		hdrs := make([]unix.Mmsghdr, n)
		for i, f := range cfg.Frames {
			iovs[i].Base = &f[0]
			iovs[i].SetLen(len(f))
			hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&sll))
			hdrs[i].Hdr.Namelen = unix.SizeofSockaddrLinklayer
			hdrs[i].Hdr.Iov = &iovs[i]
			hdrs[i].Hdr.SetIovlen(1)
		}
		start := time.Now()
		deadline := start.Add(cfg.Duration)
		done := ctx.Done()
		next := 0
		batch := paceBatch(cfg.Rate, cfg.Batch)
		// Bounded by the deadline: the clock is checked after every batch.
		for {
			select {
			case <-done:
				st.Seconds = time.Since(start).Seconds()
				return ctx.Err()
			default:
			}
			now := time.Now()
			if !now.Before(deadline) {
				break
			}
			if w := paceWait(cfg.Rate, st.Sent, now.Sub(start)); w > 0 {
				time.Sleep(w)
			}
			k := min(batch, n-next)
			r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[next])), uintptr(k), 0, 0, 0)
			switch errno {
			case 0:
				st.Sent += uint64(r)
				sent.Store(st.Sent)
				next += int(r)
			case unix.ENOBUFS, unix.EAGAIN, unix.EINTR:
				st.NoBufs++
			default:
				return fmt.Errorf("failed to send the flood on %s: %w", cfg.Iface, os.NewSyscallError("sendmmsg", errno))
			}
			if next >= n {
				next = 0
			}
		}
		st.Seconds = time.Since(start).Seconds()
		return nil
	})
	return st, err
}

// linkCounters returns interface ifname's rx_packets, tx_packets and rx_dropped as seen inside
// ns (netlink, so no process is started and several links can be read back to back).
func linkCounters(ns *lab.NS, ifname string) (rx, tx, rxDropped uint64, err error) {
	err = ns.Do(func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		s := l.Attrs().Statistics
		if s == nil {
			return fmt.Errorf("no statistics for %s", ifname)
		}
		rx, tx, rxDropped = s.RxPackets, s.TxPackets, s.RxDropped
		return nil
	})
	if err != nil {
		return 0, 0, 0, fmt.Errorf("failed to read %s's counters in %s: %w", ifname, ns.Name, err)
	}
	return rx, tx, rxDropped, nil
}

// readSoftnet reads /proc/net/softnet_stat: per CPU, frames the receive backlog dropped and the
// RPS interrupts taken. The counters are per CPU, not per namespace.
func readSoftnet() (map[int]softnetStat, error) {
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		return nil, fmt.Errorf("failed to read backlog drops: %w", err)
	}
	return parseSoftnet(b)
}

// processCtxSwitches sums the context switches of every thread of process pid: how often its
// threads went to sleep (poll, futex) or were preempted (softirq work, other tasks).
func processCtxSwitches(pid int) (uint64, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("failed to list the threads of process %d: %w", pid, err)
	}
	var n uint64
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/status")
		if err != nil {
			continue // the thread ended
		}
		c, err := parseCtxSwitches(b)
		if err != nil {
			return 0, err
		}
		n += c
	}
	return n, nil
}

// processUserTicks returns process pid's user time in clock ticks (/proc/PID/stat utime).
func processUserTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseUtime(b)
}

// htons converts v to network byte order as the kernel's sockaddr_ll expects it.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// setPdeathsig has the kernel send cmd SIGTERM when the thread that starts it exits.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}

// neighMAC reads the client's neighbour entry for the VIP.
func neighMAC(topo *lab.Topology) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := topo.Client.Do(func() error {
		ifi, err := net.InterfaceByName(lab.ClientIface)
		if err != nil {
			return err
		}
		ns, err := netlink.NeighList(ifi.Index, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, n := range ns {
			if n.IP.Equal(topo.VIP4.AsSlice()) && len(n.HardwareAddr) == 6 &&
				n.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) == 0 {
				mac = n.HardwareAddr
				return nil
			}
		}
		return fmt.Errorf("the client has no MAC for the VIP %s: nobody answered ARP", topo.VIP4)
	})
	if err != nil {
		return nil, fmt.Errorf("failed to resolve the VIP's MAC in the client: %w", err)
	}
	return mac, nil
}
