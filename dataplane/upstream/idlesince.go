package upstream

import (
	"net"
	"syscall"
	"time"
)

// GetIdleSince is GetIdle that also returns when the connection was pooled
// (PutIdle). A proxy uses it to check a connection that sat idle for a
// while before sending on it: the endpoint may have written to it since
// (a 408 before closing it, say), and a connection holding bytes nobody
// asked for must not carry a request. One reused right away is not worth
// the check.
func (e *Endpoint) GetIdleSince() (net.Conn, syscall.RawConn, time.Time) {
	e.mu.Lock()
	n := len(e.idle)
	if n == 0 {
		e.mu.Unlock()
		return nil, nil, time.Time{}
	}
	ic := e.idle[n-1]
	e.idle[n-1] = idleConn{}
	e.idle = e.idle[:n-1]
	e.mu.Unlock()
	return ic.c, ic.raw, ic.since
}
