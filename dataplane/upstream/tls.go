package upstream

import (
	"context"
	"crypto/tls"
	"net"
	"syscall"
	"time"
)

// sessionCacheSize is how many TLS sessions an endpoint keeps for
// resumption. One per server name is enough: an endpoint has one.
const sessionCacheSize = 4

// endpointTLS is an endpoint's TLS client configuration: the cluster's
// (base), made the endpoint's own (cfg: its server name, its session
// cache).
type endpointTLS struct {
	base, cfg *tls.Config
}

// ClientConfig is base made ready to dial addr ("host:port"): a clone whose
// ServerName is base's or, when base leaves it empty, the host of addr.
// crypto/tls sends no SNI for an IP address and verifies it against the
// certificate's IP names, as the snapshot promises. Health checks use it
// too, so that they verify what traffic verifies.
func ClientConfig(base *tls.Config, addr string) *tls.Config {
	cfg := base.Clone()
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	return cfg
}

// SetTLS makes the endpoint speak TLS with base, its cluster's
// configuration (nil: plain TCP). The node calls it on every apply, with
// the same pointer while the cluster's tls block is unchanged, which
// changes nothing. A new configuration empties the idle pool, so that no
// request goes out on a connection set up under the old one; busy HTTP
// connections that switch between plain and TLS are closed instead of
// pooled when their exchange ends. TCP sessions live on.
func (e *Endpoint) SetTLS(base *tls.Config) {
	cur := e.tls.Load()
	if cur == nil && base == nil || cur != nil && cur.base == base {
		return
	}
	if base == nil {
		e.tls.Store(nil)
	} else {
		cfg := ClientConfig(base, e.Addr)
		if cur != nil {
			cfg.ClientSessionCache = cur.cfg.ClientSessionCache
		} else {
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(sessionCacheSize)
		}
		// Each endpoint has a cache of its own: with a server_name shared by
		// the whole cluster, one cache would offer one endpoint's session
		// to the next, which cannot resume it, and never resume at all.
		e.tls.Store(&endpointTLS{base: base, cfg: cfg})
	}
	e.dropIdle(false)
}

// TLSConfig is the endpoint's TLS client configuration (server name and
// session cache set), or nil when it speaks plain TCP. It is shared: clone
// it before changing anything (NextProtos for HTTP/2, say).
func (e *Endpoint) TLSConfig() *tls.Config {
	if t := e.tls.Load(); t != nil {
		return t.cfg
	}
	return nil
}

// fitsPool reports whether c may be pooled: it speaks what the endpoint
// speaks now, plain or TLS.
func (e *Endpoint) fitsPool(c net.Conn) bool {
	_, isTLS := c.(*tls.Conn)
	return isTLS == (e.tls.Load() != nil)
}

// secure completes the TLS handshake over tc when the endpoint speaks TLS,
// by deadline and within ctx, and returns the connection to use: tc itself
// for a plain endpoint. On failure tc is closed.
func (e *Endpoint) secure(ctx context.Context, tc *net.TCPConn, deadline time.Time) (net.Conn, error) {
	t := e.tls.Load()
	if t == nil {
		return tc, nil
	}
	c := tls.Client(tc, t.cfg)
	tc.SetDeadline(deadline) // zero: none
	if err := c.HandshakeContext(ctx); err != nil {
		tc.Close()
		return nil, &HandshakeError{Err: err}
	}
	tc.SetDeadline(time.Time{})
	return c, nil
}

// HandshakeError is a connect that failed in its TLS handshake, for Err.
type HandshakeError struct{ Err error }

func (e *HandshakeError) Error() string { return "TLS handshake: " + e.Err.Error() }
func (e *HandshakeError) Unwrap() error { return e.Err }

// TCPConn is the TCP connection under c, a connection from Dial or
// DialSession: c itself for a plain endpoint, the socket under TLS
// otherwise. Socket-level work (splice, raw reads, TCP_INFO, a close that
// sends no TLS alert) goes through it; bytes of a TLS connection must not.
func TCPConn(c net.Conn) *net.TCPConn {
	switch c := c.(type) {
	case *net.TCPConn:
		return c
	case *tls.Conn:
		tc, _ := c.NetConn().(*net.TCPConn)
		return tc
	}
	return nil
}

// CloseConn closes c, a connection to an endpoint or from a client. Over
// TLS the close_notify alert goes first only when the socket has room for
// it now, as HAProxy sends it: with the send buffer full (a peer that
// stopped reading), crypto/tls would wait up to 5 s for room, holding the
// caller, for a peer that may never read on. The socket then closes at
// once; what it holds still goes out, followed by the FIN.
func CloseConn(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		if sc, ok := tc.NetConn().(syscall.Conn); ok && !roomToSend(sc) {
			tc.NetConn().Close()
			return
		}
	}
	c.Close()
}

// closeHard closes c at once: for TLS, the socket under it, without the
// close_notify alert, which waits for room in a send buffer the endpoint
// may not be emptying. Forced closes (drain timeouts, shutdowns) use it.
func closeHard(c net.Conn) {
	if tc := TCPConn(c); tc != nil {
		tc.Close()
		return
	}
	c.Close()
}
