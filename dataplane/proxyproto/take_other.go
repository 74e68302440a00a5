//go:build !unix

package proxyproto

import (
	"net"
	"time"
)

// Take is not supported where sockets cannot be peeked at: it returns
// ErrUnsupported.
func Take(c *net.TCPConn, deadline time.Time) (*Header, error) { return nil, ErrUnsupported }
