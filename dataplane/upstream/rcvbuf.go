package upstream

import "syscall"

// SetReceiveBuffer fixes the kernel receive buffer (SO_RCVBUF) of new
// connections to the endpoint at n bytes, 0 to let the kernel size it (the
// cluster's receive_buffer_bytes in the snapshot applied last). A change
// empties the idle pool, and busy HTTP connections dialed before it are
// closed instead of pooled when their exchange ends, so that requests move
// to connections with the new buffer; TCP sessions keep theirs.
func (e *Endpoint) SetReceiveBuffer(n int) {
	if e.rcvbuf.Swap(uint32(n)) != uint32(n) {
		e.dropIdle(false)
	}
}

// ReceiveBuffer is what SetReceiveBuffer set, 0 for none.
func (e *Endpoint) ReceiveBuffer() int { return int(e.rcvbuf.Load()) }

// rcvbufControl is the net.Dialer Control that fixes a connection's
// receive buffer at n bytes: before the connect, so that the window scale
// offered in the SYN fits it. nil for n 0: nothing to set.
func rcvbufControl(n uint32) func(network, address string, c syscall.RawConn) error {
	if n == 0 {
		return nil
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = setReceiveBuffer(fd, int(n)) }); err != nil {
			return err
		}
		return serr
	}
}
