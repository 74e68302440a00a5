//go:build !linux

package tcpproxy

// Elsewhere than on Linux a half keeps its goroutine for the whole
// session: the runtime splices where it can (net.TCPConn.ReadFrom), and
// nothing parks.

type halfState struct{}

// parkAfter has no use here: nothing parks.
const parkAfter = 0

func (h *half) init()    {}
func (h *half) release() {}
func (h *half) unwatch() {}

// begin runs a new session's half on a goroutine of its own.
func (h *half) begin() { go h.run() }

// run moves the half's bytes until src's EOF or an error.
func (h *half) run() {
	defer h.recoverPanic()
	h.end(h.copy())
}

// copy moves bytes from src to dst until src's EOF (nil) or an error.
func (h *half) copy() error {
	switch {
	case h.tlsSrc():
		return h.pump(h.dst(), h.s.backend)
	case h.tlsDst():
		return h.pump(h.s.backend, h.src())
	}
	// ReadFrom moves the bytes out of the half's sight: they are counted
	// once it returns, at the half's end.
	n, err := h.dst().ReadFrom(h.src())
	h.sent(n)
	return err
}

// unpark reports whether h was parked: never, here.
func unpark(h *half) bool { return false }
