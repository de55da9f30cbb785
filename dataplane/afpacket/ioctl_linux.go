//go:build linux

package afpacket

// This file uses unsafe to pass struct ifreq and struct ethtool_value to ioctl(2).

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ifreqRaw is struct ifreq: the name, then a 24-byte union (here an int).
type ifreqRaw struct {
	name  [unix.IFNAMSIZ]byte
	union [24]byte
}

// ifreqPtr is struct ifreq with the union holding a pointer (ifr_data), kept as a pointer
// type so the garbage collector sees it.
type ifreqPtr struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}

func setName(dst *[unix.IFNAMSIZ]byte, name string) error {
	if name == "" || len(name) >= unix.IFNAMSIZ {
		return fmt.Errorf("invalid interface name %q: use 1 to %d bytes", name, unix.IFNAMSIZ-1)
	}
	copy(dst[:], name)
	return nil
}

// ifaceInfo asks the socket's own network namespace (not the caller's) for the interface's
// index and MTU.
func ifaceInfo(fd int, name string) (index, mtu int, err error) {
	var ifr ifreqRaw
	if err = setName(&ifr.name, name); err != nil {
		return
	}
	if err = ioctl(fd, unix.SIOCGIFINDEX, unsafe.Pointer(&ifr)); err != nil {
		err = fmt.Errorf("failed to find interface %q (is it in this network namespace?): %w", name, os.NewSyscallError("ioctl SIOCGIFINDEX", err))
		return
	}
	index = int(*(*int32)(unsafe.Pointer(&ifr.union[0])))
	if err = ioctl(fd, unix.SIOCGIFMTU, unsafe.Pointer(&ifr)); err != nil {
		err = fmt.Errorf("failed to read the MTU of %q: %w", name, os.NewSyscallError("ioctl SIOCGIFMTU", err))
		return
	}
	mtu = int(*(*int32)(unsafe.Pointer(&ifr.union[0])))
	return
}

// ethtool commands and flags (linux/ethtool.h) missing from x/sys.
const ethFlagLRO = 1 << 15 // ETH_FLAG_LRO

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

func ethtool(fd int, name string, cmd, data uint32) (uint32, error) {
	v := &ethtoolValue{cmd: cmd, data: data}
	ifr := &ifreqPtr{data: unsafe.Pointer(v)}
	if err := setName(&ifr.name, name); err != nil {
		return 0, err
	}
	err := ioctl(fd, unix.SIOCETHTOOL, unsafe.Pointer(ifr))
	runtime.KeepAlive(v)
	return v.data, err
}

// DisableReceiveOffloads switches GRO and LRO off on the interface through the SIOCETHTOOL
// ioctl (ETHTOOL_SGRO, and ETHTOOL_SFLAGS for LRO) and reports which it changed, so the
// caller can log it. Offloads that are already off, or that the device does not have, are
// left alone. The interface is looked up in the calling thread's network namespace.
//
// Receive offloads merge frames into super-frames larger than the MTU, which a forwarder
// then cannot send. They do not stop a veth peer's TSO from delivering GSO frames; see
// Config.VnetHdr for those.
func DisableReceiveOffloads(ifname string) (changed []string, err error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("failed to create a socket for ethtool: %w", os.NewSyscallError("socket", err))
	}
	defer unix.Close(fd)

	gro, err := ethtool(fd, ifname, unix.ETHTOOL_GGRO, 0)
	if err != nil {
		return nil, fmt.Errorf("failed to read GRO state of %q: %w", ifname, os.NewSyscallError("ioctl ETHTOOL_GGRO", err))
	}
	if gro != 0 {
		if _, err := ethtool(fd, ifname, unix.ETHTOOL_SGRO, 0); err != nil {
			return changed, fmt.Errorf("failed to switch GRO off on %q (try ethtool -K %s gro off): %w", ifname, ifname, os.NewSyscallError("ioctl ETHTOOL_SGRO", err))
		}
		changed = append(changed, "gro")
	}

	flags, err := ethtool(fd, ifname, unix.ETHTOOL_GFLAGS, 0)
	if errors.Is(err, unix.EOPNOTSUPP) {
		return changed, nil // no legacy flags: no LRO either
	}
	if err != nil {
		return changed, fmt.Errorf("failed to read offload flags of %q: %w", ifname, os.NewSyscallError("ioctl ETHTOOL_GFLAGS", err))
	}
	if flags&ethFlagLRO != 0 {
		if _, err := ethtool(fd, ifname, unix.ETHTOOL_SFLAGS, flags&^ethFlagLRO); err != nil {
			return changed, fmt.Errorf("failed to switch LRO off on %q (try ethtool -K %s lro off): %w", ifname, ifname, os.NewSyscallError("ioctl ETHTOOL_SFLAGS", err))
		}
		changed = append(changed, "lro")
	}
	return changed, nil
}
