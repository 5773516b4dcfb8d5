//go:build !linux

package main

func newPacer() pacer {
	return newTimerPacer()
}
