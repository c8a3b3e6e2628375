//go:build !unix

package interop

import (
	"errors"
	"os"
	"os/exec"
)

// OwnGroup does nothing here: without process groups, KillGroup kills the
// process alone.
func OwnGroup(cmd *exec.Cmd) {}

// KillGroup kills the process pid; one already gone is not an error.
func KillGroup(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return nil
	}
	if err := p.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}
