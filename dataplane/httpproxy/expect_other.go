//go:build !linux

package httpproxy

import "net"

// watchBody watches nothing on this platform: the body of an Expect:
// 100-continue request waits for the endpoint's 100 (see expect_linux.go).
func (cc *clientConn) watchBody(bc net.Conn) {}
