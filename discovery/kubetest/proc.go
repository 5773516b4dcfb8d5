package kubetest

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// process is one child: a control plane component, a build step or a
// program in a pod, started with proxytest's process handling (own process
// group, killed with the test binary on Linux).
type process struct {
	name string
	*proxytest.Process
}

// startProcess starts cmd, with its output appended to logPath if that is
// not "".
func startProcess(name string, cmd *exec.Cmd, logPath string) (*process, error) {
	if logPath != "" {
		log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		defer log.Close() // the child has its own descriptor
		cmd.Stdout, cmd.Stderr = log, log
	}
	p, err := proxytest.StartProcess(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &process{name: name, Process: p}, nil
}
