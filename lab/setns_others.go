//go:build !linux

package lab

import (
	"fmt"
	"runtime"
)

func openNetns(name string) (int, error) {
	return -1, fmt.Errorf("failed to open network namespace %q: unimplemented on %s", name, runtime.GOOS)
}

func closeNetns(int) error { return nil }

func doInNetns(int, func() error) error {
	return fmt.Errorf("network namespaces are unimplemented on %s", runtime.GOOS)
}
