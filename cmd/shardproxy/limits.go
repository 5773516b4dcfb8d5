package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

// nrOpenFile holds the kernel's ceiling for a process's open file limit.
const nrOpenFile = "/proc/sys/fs/nr_open"

// raiseOpenFiles raises the open file limit (RLIMIT_NOFILE) as far as the
// process may: the hard limit up to the kernel's nr_open when the process
// may raise it (root with CAP_SYS_RESOURCE), and the soft limit to the
// hard one. Every client is a descriptor, and the client limit is computed
// from the soft limit, as nutcracker computes it. Go raises the soft limit
// to one below the hard limit at start; this takes the last one too.
func raiseOpenFiles(nrOpenPath string) (before, after syscall.Rlimit, err error) {
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &before); err != nil {
		return before, before, fmt.Errorf("getrlimit RLIMIT_NOFILE: %w", err)
	}
	ceiling := before.Max
	if b, err := os.ReadFile(nrOpenPath); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n > ceiling {
			ceiling = n
		}
	}
	if ceiling > before.Max {
		// Refused without CAP_SYS_RESOURCE, which the soft limit does not need.
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: ceiling, Max: ceiling})
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &after); err != nil {
		return before, before, fmt.Errorf("getrlimit RLIMIT_NOFILE: %w", err)
	}
	if after.Cur < after.Max {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: after.Max, Max: after.Max}); err != nil {
			return before, after, fmt.Errorf("setrlimit RLIMIT_NOFILE to %d: %w", after.Max, err)
		}
		after.Cur = after.Max
	}
	return before, after, nil
}

// setOpenFiles raises the open file limit and logs what it is.
func setOpenFiles(logger *slog.Logger) {
	before, after, err := raiseOpenFiles(nrOpenFile)
	if err != nil {
		logger.Warn("open file limit not raised", "soft", after.Cur, "hard", after.Max, "err", err)
		return
	}
	logger.Info("open file limit", "soft", after.Cur, "hard", after.Max, "hard_raised", after.Max > before.Max)
}

// defaultMemoryLimitRatio is the share of the container's memory limit
// that Go's soft memory limit is set to when GOMEMLIMIT is not: the rest
// is for what the Go runtime does not count (the kernel's socket buffers,
// thread stacks) and for the heap to overshoot while the collector works,
// so that a proxy near its limit collects instead of being OOM-killed.
const defaultMemoryLimitRatio = 0.9

// The cgroup files that give a process's memory limit.
const (
	cgroupRoot = "/sys/fs/cgroup"
	selfCgroup = "/proc/self/cgroup"
)

// cgroupMemoryLimit returns the memory limit of the cgroup the process is
// in and the file it was read from, or 0 when there is none. root is where
// the cgroup file systems are mounted and selfCgroup the process's
// /proc/self/cgroup. With cgroup v2 (root has cgroup.controllers) it is
// the lowest memory.max of the process's cgroup and of those above it,
// "max" meaning none; with v1 the same of memory/.../memory.limit_in_bytes,
// where a value near 2^63 means none. In a container the process's cgroup
// is usually the root of what is mounted; without a cgroup namespace it is
// the path /proc/self/cgroup names, and the files it has are read.
func cgroupMemoryLimit(root, selfCgroup string) (limit int64, from string, err error) {
	v2Path, v1Path := "/", "/"
	if b, err := os.ReadFile(selfCgroup); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			// hierarchy-ID:controller-list:cgroup-path
			id, rest, _ := strings.Cut(line, ":")
			controllers, p, _ := strings.Cut(rest, ":")
			switch {
			case id == "0" && controllers == "":
				v2Path = p
			case strings.Contains(","+controllers+",", ",memory,"):
				v1Path = p
			}
		}
	}
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		return lowestCgroupLimit(root, v2Path, "memory.max")
	}
	return lowestCgroupLimit(filepath.Join(root, "memory"), v1Path, "memory.limit_in_bytes")
}

// lowestCgroupLimit reads the limit file name of the cgroup at cgroupPath
// under the hierarchy mounted at base and of every cgroup above it, and
// returns the lowest limit and its file; 0 when none has a limit.
func lowestCgroupLimit(base, cgroupPath, name string) (limit int64, from string, err error) {
	for dir := path.Clean("/" + cgroupPath); ; dir = path.Dir(dir) {
		file := filepath.Join(base, dir, name)
		n, err := readCgroupLimit(file)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return 0, file, err
		case n > 0 && (limit == 0 || n < limit):
			limit, from = n, file
		}
		if dir == "/" {
			return limit, from, nil
		}
	}
}

// noCgroupLimit is where cgroup v1 values mean no limit: its "unlimited"
// is the largest page count in bytes, 2^63 rounded down to a page.
const noCgroupLimit = 1 << 62

// readCgroupLimit reads a memory.max or memory.limit_in_bytes: 0 for no
// limit.
func readCgroupLimit(file string) (int64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	v := strings.TrimSpace(string(b))
	if v == "max" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a number of bytes", file, v)
	}
	if n <= 0 || n >= noCgroupLimit {
		return 0, nil
	}
	return n, nil
}

// setMemoryLimit sets Go's soft memory limit to ratio of the cgroup's
// memory limit, unless GOMEMLIMIT set one (the runtime has read it) or
// ratio is 0, and logs the limit in force.
func setMemoryLimit(ratio float64, root, selfCgroup string, logger *slog.Logger) {
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		logger.Info("memory limit set by GOMEMLIMIT", "GOMEMLIMIT", v, "bytes", debug.SetMemoryLimit(-1))
		return
	}
	if ratio == 0 {
		logger.Info("no memory limit: --memory-limit-ratio is 0")
		return
	}
	limit, from, err := cgroupMemoryLimit(root, selfCgroup)
	switch {
	case err != nil:
		logger.Warn("no memory limit: the cgroup's cannot be read", "err", err)
	case limit == 0:
		logger.Info("no memory limit: the cgroup has none")
	default:
		soft := int64(float64(limit) * ratio)
		debug.SetMemoryLimit(soft)
		logger.Info("memory limit", "bytes", soft, "cgroup_limit", limit, "ratio", ratio, "from", from)
	}
}

// checkLimitFlags checks --max-clients and --memory-limit-ratio.
func checkLimitFlags(o options) error {
	if o.maxClients < 0 {
		return fmt.Errorf("--max-clients must be 0 (computed) or a positive number, not %d", o.maxClients)
	}
	if v := o.memoryLimitRatio; !(v >= 0 && v <= 1) {
		return fmt.Errorf("--memory-limit-ratio must be between 0 and 1, not %v", v)
	}
	return nil
}
