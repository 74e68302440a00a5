package httpproxy

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// watchBody watches the client of an Expect: 100-continue request for its
// body while forward waits for the endpoint's first answer, as HAProxy
// does: a client that waited for 100 Continue long enough sends the body
// anyway (curl after a second), and an endpoint may read it without ever
// sending 100 (Python's http.server). Once a byte arrives, x.bodyCame is
// set and bc's read deadline moves to the past, which ends the wait for the
// answer (readEndpoint): the body then goes to the endpoint. Nothing is
// read from the client; endBodyWatch ends the watch. Without a socket under
// the client connection, nothing is watched, and the body waits for the
// endpoint's 100.
func (cc *clientConn) watchBody(bc net.Conn) {
	raw := cc.socket()
	if raw == nil {
		return
	}
	x := cc.x
	// The client's read deadline is the watch's until endBodyWatch.
	cc.c.SetReadDeadline(time.Time{})
	cc.rdl = time.Time{}
	done := make(chan struct{})
	x.bodyWatch = done
	go func() {
		defer close(done)
		sent := false
		err := raw.Read(func(fd uintptr) bool {
			n, err := peekByte(fd)
			sent = err == nil && n > 0
			// A close or a reset ends the watch too: the wait notices it
			// as before (endpointStalled).
			return err != unix.EAGAIN
		})
		if err == nil && sent {
			// bodyCame first: the wait on bc that this wakes
			// (readEndpoint) checks it after each stall, and so
			// ends although x.epArmed, which only endBodyWatch
			// forgets, still names the deadline moved here.
			x.bodyCame.Store(true)
			bc.SetReadDeadline(aLongTimeAgo)
		}
	}()
}
