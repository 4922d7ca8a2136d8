package bench

import "syscall"

// childAttr makes a server the comparison starts die with it (never outlive the run).
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
