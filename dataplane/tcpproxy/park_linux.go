//go:build linux

package tcpproxy

import "errors"

// errParked is what a half's copy returns when the half parked: its
// goroutine must let it go. errNoPark is what park returns where halves
// cannot park.
var (
	errParked = errors.New("tcpproxy: half parked")
	errNoPark = errors.New("tcpproxy: halves cannot park here")
)

// park would put an idle half to sleep without its goroutine; not yet.
func park(h *half) error { return errNoPark }

// unpark reports whether h was parked: never, yet.
func unpark(h *half) bool { return false }
