//go:build !linux

package bench

import (
	"context"
	"fmt"
	"runtime"
)

// Live transmits c through a TPACKETv3 TX ring; it needs Linux.
func Live(ctx context.Context, c *Capture, lc LiveConfig) (*LiveReport, error) {
	return nil, fmt.Errorf("bench live is not implemented on %s; it needs Linux AF_PACKET", runtime.GOOS)
}
