package upstream

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/sluice-lb/sluice/dataplane/proxyproto"
)

// SetSendProxy sets the PROXY protocol version (1 or 2; 0: none) that
// new connections to the endpoint start with (the endpoint's effective
// send_proxy in the snapshot applied last). Connections already open keep
// what they started with.
func (e *Endpoint) SetSendProxy(version int) { e.sendProxy.Store(uint32(version)) }

// SendProxy is the version SetSendProxy set, 0 for none.
func (e *Endpoint) SendProxy() int { return int(e.sendProxy.Load()) }

// AppendProxyHeader appends to b the PROXY header a new connection to the
// endpoint starts with, saying that client connected to local (a
// listener's address); it appends nothing when the endpoint takes none.
// Invalid addresses give a header without an address (v1 "UNKNOWN", v2
// LOCAL): that is what a health check sends.
//
// A connection that carried a header speaks for that client alone: an
// HTTP proxy must not pool it for others (HAProxy makes such connections
// private).
func (e *Endpoint) AppendProxyHeader(b []byte, client, local netip.AddrPort) []byte {
	switch e.SendProxy() {
	case 1:
		return proxyproto.AppendV1(b, client, local)
	case 2:
		return proxyproto.AppendV2(b, client, local)
	}
	return b
}

// DialWithHeader is Dial (session false) or DialSession that writes hdr
// (a PROXY header from AppendProxyHeader) on the new connection before
// anything else goes over it, within the same timeout. A failed write is
// a failed connect.
func (e *Endpoint) DialWithHeader(ctx context.Context, timeout time.Duration, session bool, hdr []byte) (net.Conn, error) {
	return e.dial(ctx, timeout, session, true, hdr)
}

func writeHeader(c net.Conn, hdr []byte, timeout time.Duration) error {
	if timeout > 0 {
		c.SetWriteDeadline(time.Now().Add(timeout))
		defer c.SetWriteDeadline(time.Time{})
	}
	_, err := c.Write(hdr)
	return err
}
