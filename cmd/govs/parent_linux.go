package main

import (
	"os/exec"
	"syscall"
)

// stopWithParent has the kernel send cmd SIGTERM when the thread that starts it exits: when this
// process dies, however it dies, but also when that one OS thread ends (golang/go#27505), so
// startTied keeps the thread alive for the child's whole life.
func stopWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
