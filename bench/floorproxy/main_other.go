//go:build !linux

// Floorproxy runs only on Linux: its event loop is epoll's.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "floorproxy: epoll is Linux's; this platform has none")
	os.Exit(1)
}
