package main

import (
	"os/exec"
	"syscall"
)

// stopWithParent has the kernel send cmd SIGTERM when this process dies, however it dies.
func stopWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
