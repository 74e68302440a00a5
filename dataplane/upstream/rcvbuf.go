package upstream

import "syscall"

// SetReceiveBuffer fixes the kernel receive buffer (SO_RCVBUF) of new
// connections to the endpoint at n bytes, 0 to let the kernel size it (the
// cluster's receive_buffer_bytes in the snapshot applied last).
// Connections already open keep theirs.
func (e *Endpoint) SetReceiveBuffer(n int) { e.rcvbuf.Store(uint32(n)) }

// ReceiveBuffer is what SetReceiveBuffer set, 0 for none.
func (e *Endpoint) ReceiveBuffer() int { return int(e.rcvbuf.Load()) }

// dialControl is the net.Dialer Control of a connection to the endpoint:
// it sets the receive buffer before the connect, so that the window scale
// offered in the SYN fits it. nil when there is nothing to set.
func (e *Endpoint) dialControl() func(network, address string, c syscall.RawConn) error {
	n := int(e.rcvbuf.Load())
	if n == 0 {
		return nil
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = setReceiveBuffer(fd, n) }); err != nil {
			return err
		}
		return serr
	}
}
