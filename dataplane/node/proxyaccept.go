package node

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/proxyproto"
	"github.com/sluice-lb/sluice/dataplane/rules"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// defaultProxyTimeout bounds the wait for a PROXY header when the
// listener's proxy_protocol sets no timeout.
const defaultProxyTimeout = 5 * time.Second

// proxyAccept is a listener's proxy_protocol block, compiled: which peers
// may put a PROXY header in front of their connections, whether they
// must, and for how long the listener waits for it. It is replaced whole
// by an apply.
type proxyAccept struct {
	listener string
	required bool
	trusted  *rules.Sources // nil: every peer
	timeout  time.Duration
	onConn   func(*conntrack.ConnInfo) // records connections closed here
	meter    *meter.Listener           // the listener's: counts and logs them
}

func compileProxyAccept(ls *sluicev1.Listener, onConn func(*conntrack.ConnInfo), m *meter.Listener) (*proxyAccept, error) {
	pp := ls.GetProxyProtocol()
	if pp == nil {
		return nil, nil
	}
	a := &proxyAccept{listener: ls.GetName(), required: pp.GetRequired(), timeout: defaultProxyTimeout, onConn: onConn, meter: m}
	if pp.Timeout != nil {
		a.timeout = pp.GetTimeout().AsDuration()
	}
	if srcs := pp.GetTrustedSources(); len(srcs) > 0 {
		set, err := rules.NewSources(srcs)
		if err != nil {
			return nil, err
		}
		a.trusted = set
	}
	return a, nil
}

// client returns the address of the client on whose behalf c came and
// the address that client connected to: the ones its PROXY header names,
// or c's peer and a zero dest (c's own local address stands) when it
// sent none or was not trusted to (its bytes are then the protocol's own
// and left unread), or when the header says the peer speaks for itself
// (v2 LOCAL, v1 UNKNOWN). As in HAProxy, the header's destination is
// what PROXY headers sent on to endpoints name. ok is false when c must
// be closed: a malformed header, none from a peer that must send one, or
// the timeout; the closed connection is recorded with why.
//
// The header is read within the timeout from accept, before anything
// else, the TLS handshake of an HTTPS listener included; only its bytes
// are taken off the socket (proxyproto.Take), so the TCP proxy still
// splices and the HTTP proxy reads the rest as it arrived.
func (a *proxyAccept) client(c *net.TCPConn) (client, dest netip.AddrPort, ok bool) {
	start := time.Now()
	peer, _ := proxyproto.Addrs(c)
	if a.trusted != nil && !a.trusted.Contains(peer.Addr()) {
		if a.required {
			a.refuse(c, peer, start, sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST,
				"a PROXY header is required, and "+peer.Addr().String()+" is not among the listener's trusted_sources")
			return peer, dest, false
		}
		return peer, dest, true
	}
	h, err := proxyproto.Take(c, start.Add(a.timeout))
	if err == nil {
		err = c.SetReadDeadline(time.Time{})
	}
	switch {
	case err != nil:
		why := headerReason(err)
		a.refuse(c, peer, start, why, a.headerDetail(why, err))
		return peer, dest, false
	case h == nil && a.required:
		a.refuse(c, peer, start, sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST, "no PROXY header, which the listener requires")
		return peer, dest, false
	case h == nil || h.Local:
		return peer, dest, true
	}
	return unmapped(h.Source), unmapped(h.Dest), true
}

// unmapped is a with an IPv4-mapped IPv6 address written as IPv4, as
// sockets' addresses are (proxyproto.Addrs).
func unmapped(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// refuse closes c and records it: in the connection records, the
// listener's connections and its access log, which says detail too.
func (a *proxyAccept) refuse(c *net.TCPConn, peer netip.AddrPort, start time.Time, why sluicev1.CloseReason, detail string) {
	c.Close()
	took := time.Since(start)
	if a.meter != nil {
		a.meter.Refused(&meter.Exchange{Start: start, Client: peer, Total: took, Cause: why, Detail: detail})
	}
	if a.onConn != nil {
		a.onConn(&conntrack.ConnInfo{Listener: a.listener, Client: peer.String(), Start: start, Duration: took, Reason: why})
	}
}

// headerDetail says why a header could not be read because of err, whose
// close reason is why.
func (a *proxyAccept) headerDetail(why sluicev1.CloseReason, err error) string {
	var fe *proxyproto.FormatError
	switch {
	case errors.As(err, &fe):
		return fmt.Sprintf("malformed PROXY v%d header: %s", fe.Version, fe.Reason)
	case why == sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT:
		return "no whole PROXY header within the listener's proxy_protocol.timeout (" + a.timeout.String() + ")"
	case why == sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED:
		return "the client closed the connection before a whole PROXY header came"
	}
	return "reading the PROXY header: " + err.Error()
}

// headerReason is the close reason of a connection whose header could not
// be read because of err.
func headerReason(err error) sluicev1.CloseReason {
	var fe *proxyproto.FormatError
	switch {
	case errors.As(err, &fe):
		return sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST
	case errors.Is(err, os.ErrDeadlineExceeded):
		return sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED
	case errors.Is(err, net.ErrClosed):
		return sluicev1.CloseReason_CLOSE_REASON_LISTENER_CLOSED
	}
	return sluicev1.CloseReason_CLOSE_REASON_IO_ERROR
}

// sendProxyVersion is the PROXY header version endpoint e gets from
// cluster c (0: none): its own send_proxy, or the cluster's when it says
// nothing.
func sendProxyVersion(c *sluicev1.Cluster, e *sluicev1.Endpoint) int {
	v := e.GetSendProxy()
	if v == sluicev1.SendProxy_SEND_PROXY_UNSPECIFIED {
		v = c.GetSendProxy()
	}
	switch v {
	case sluicev1.SendProxy_SEND_PROXY_V1:
		return 1
	case sluicev1.SendProxy_SEND_PROXY_V2:
		return 2
	}
	return 0
}
