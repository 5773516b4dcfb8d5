//go:build !unix

package proxy

import "time"

// canMeasureCPU is false where the CoreScaler has no CPU time to read; it
// then leaves GOMAXPROCS alone.
const canMeasureCPU = false

func processCPU() time.Duration { return 0 }
