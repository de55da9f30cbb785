package lab

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// RemoveStale deletes the namespaces of topologies with the given prefix whose process is gone,
// and returns their names. A topology's namespaces are named prefix-PID-ID-role after the process
// that built it; Close removes them, but a process killed outright (SIGKILL, a crash) leaves them
// behind, with their addresses and bridges. Namespaces of a live process are never touched.
func RemoveStale(prefix string) ([]string, error) {
	ents, err := os.ReadDir("/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		pid, ok := ownerPID(e.Name(), prefix)
		if !ok || pid == os.Getpid() || processExists(pid) {
			continue
		}
		if err := ipCmd("netns", "del", e.Name()); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, e.Name())
	}
	return removed, errors.Join(errs...)
}

// ownerPID parses prefix-PID-ID-role.
func ownerPID(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix+"-")
	if !ok {
		return 0, false
	}
	f := strings.SplitN(rest, "-", 3)
	if len(f) != 3 || len(f[1]) != 6 {
		return 0, false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
