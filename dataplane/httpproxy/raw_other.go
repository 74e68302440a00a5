//go:build !unix

package httpproxy

import (
	"net"
	"syscall"
)

// initRaw does nothing where raw socket reads are not available: the
// connection keeps its exchange while idle and writes go through net.Conn.
func (cc *clientConn) initRaw() {}

// alive cannot probe without raw sockets; a dead pooled connection then
// shows as a 502 for a request with a body.
func alive(c net.Conn) bool { return true }

// answerSeen cannot look without raw sockets: an early answer is missed,
// as before, and the client gets a 502 or 504.
func (cc *clientConn) answerSeen(net.Conn) []byte { return nil }

// requestWaiting cannot look without raw sockets: Drain closes an idle
// connection whose next request came but was not read yet.
func (cc *clientConn) requestWaiting() bool { return false }

func (cc *clientConn) rawConnOf(net.Conn) syscall.RawConn { return nil }

func (cc *clientConn) readEndpointRaw(syscall.RawConn, []byte) (int, error) {
	panic("httpproxy: no raw sockets")
}

func (cc *clientConn) writeEndpointRaw(syscall.RawConn, []byte) (int, error) {
	panic("httpproxy: no raw sockets")
}

func (cc *clientConn) sendAwaitEndpointRaw(syscall.RawConn, []byte) (int, error) {
	panic("httpproxy: no raw sockets")
}
