package main

import (
	"os"
	"strings"
)

// kernelRelease returns the running kernel's release, e.g. "6.18.0", or "unknown".
func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return "Linux " + strings.TrimSpace(string(b))
}
