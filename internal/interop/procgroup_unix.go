//go:build unix

package interop

import (
	"errors"
	"os/exec"
	"syscall"
)

// OwnGroup makes cmd start a process group of its own, so that KillGroup
// ends it with everything it started (Chromium runs many processes).
func OwnGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

// KillGroup kills the process group that the process pid leads; a group
// already gone is not an error.
func KillGroup(pid int) error {
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
