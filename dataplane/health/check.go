package health

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/dataplane/proxyproto"
	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// A prober runs one check of one endpoint. check is called from the probe's
// goroutine only, one call at a time; it must return soon after ctx is
// cancelled and within about the check timeout otherwise. It returns nil
// when the endpoint passed, or why it failed, in a few words for operators
// (see failure); a check that cannot conclude (timeout, refused, garbage)
// fails. It never panics on what the endpoint sends.
type prober interface {
	check(ctx context.Context) error
}

// newProber returns the prober for s, whose defaults are already filled in.
// Each check connects to what target returns then.
func newProber(s Spec, target func() string) prober {
	cn := connector{addr: target, timedOut: timeoutError(s.Timeout), preface: localHeader(s.SendProxy)}
	if s.TLS != nil {
		// The endpoint's server name: that of its address, not of the
		// resolved address target gives.
		cn.tls = upstream.ClientConfig(s.TLS, s.Addr)
		cn.tls.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	}
	switch {
	case s.HTTPPath != "" && s.HTTP2:
		return newH2Check(s, cn)
	case s.HTTPPath != "":
		return newHTTPCheck(s, cn)
	}
	return &tcpCheck{connector: cn, timeout: s.Timeout}
}

// connector opens the connection of a check: TCP, a PROXY header when the
// endpoint expects one, and over it TLS when the endpoint speaks TLS.
type connector struct {
	addr     func() string
	tls      *tls.Config // nil: plain TCP
	timedOut error       // "timeout after 1s", made once
	preface  []byte      // a PROXY header (Spec.SendProxy), or nil
}

// localHeader is the PROXY header of version v (none for 0) that a check
// starts with: without an address, the node speaking for itself.
func localHeader(v int) []byte {
	switch v {
	case 1:
		return proxyproto.AppendV1(nil, netip.AddrPort{}, netip.AddrPort{})
	case 2:
		return proxyproto.AppendV2(nil, netip.AddrPort{}, netip.AddrPort{})
	}
	return nil
}

// connect connects by deadline, or returns why it could not, in a few
// words (see failure).
func (cn *connector) connect(ctx context.Context, deadline time.Time) (net.Conn, error) {
	d := net.Dialer{Deadline: deadline, KeepAlive: -1} // a check's connection is short-lived
	conn, err := d.DialContext(ctx, "tcp", cn.addr())
	if err != nil {
		return nil, failure(err, cn.timedOut)
	}
	conn.SetDeadline(deadline)
	if cn.preface != nil {
		// Before TLS: the endpoint's PROXY listener reads it first.
		if _, err := conn.Write(cn.preface); err != nil {
			conn.Close()
			return nil, failure(err, cn.timedOut)
		}
	}
	if cn.tls == nil {
		return conn, nil
	}
	tc := tls.Client(conn, cn.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, handshakeFailure(err, cn.timedOut)
	}
	return tc, nil
}

// tcpCheck is HAProxy's plain "check": the endpoint is up if it accepts a
// TCP connection within the timeout (and completes the TLS handshake, for
// an endpoint that speaks TLS: HAProxy's "check-ssl"). The connection is
// closed at once, after the PROXY header the endpoint expects, if any, went
// out.
type tcpCheck struct {
	connector
	timeout time.Duration
}

func (t *tcpCheck) check(ctx context.Context) error {
	conn, err := t.connect(ctx, time.Now().Add(t.timeout))
	if err != nil {
		return err
	}
	conn.Close()
	return nil
}

// handshakeFailure says why a TLS handshake failed: a certificate that
// does not verify as crypto/x509 puts it ("TLS: x509: certificate signed by
// unknown authority"), an alert from the endpoint as crypto/tls names it
// ("TLS: protocol version not supported"), a timeout or reset as failure
// does, anything else as crypto/tls puts it.
func handshakeFailure(err, timedOut error) error {
	var cve *tls.CertificateVerificationError
	switch {
	case errors.As(err, &cve):
		return errors.New("TLS: " + cve.Err.Error())
	case errors.Is(err, io.EOF):
		return errors.New("connection closed during the TLS handshake")
	}
	if f := failure(err, timedOut); f != err {
		var op *net.OpError
		if errors.As(err, &op) && f == op.Err {
			// An alert from the endpoint ("remote error: tls: protocol
			// version not supported"): say that TLS failed.
			return errors.New("TLS: " + strings.TrimPrefix(f.Error(), "tls: "))
		}
		return f
	}
	return errors.New("TLS handshake: " + err.Error())
}

// ConnectFailure says why a connect to an endpoint failed
// (upstream.Endpoint.LastConnectError) in the words a check's Detail
// would: "connection refused", "TLS: x509: certificate signed by unknown
// authority", "timeout".
func ConnectFailure(err error) string {
	timedOut := errors.New("timeout")
	if he := (*upstream.HandshakeError)(nil); errors.As(err, &he) {
		return handshakeFailure(he.Err, timedOut).Error()
	}
	return failure(err, timedOut).Error()
}

// Why checks fail, as Status.Detail says it. The texts are short: sluicectl
// stats shows them in a table column.
var (
	errRefused     = errors.New("connection refused")
	errReset       = errors.New("connection reset")
	errClosed      = errors.New("connection closed before the status line")
	errUnreachable = errors.New("host unreachable")
	errNoNetwork   = errors.New("network unreachable")
)

// timeoutError is what a check that ran out of its timeout d says.
func timeoutError(d time.Duration) error { return errors.New("timeout after " + d.String()) }

// failure says in a few words why a connect, write or read of a check
// failed: the errors operators know (refused, reset, timeout) by name, a
// DNS failure as the resolver put it, anything else as the system's text
// without the Go wrapping ("dial tcp 10.0.0.1:80: connect: ...").
func failure(err, timedOut error) error {
	var (
		ne  net.Error
		dns *net.DNSError
		op  *net.OpError
		se  *os.SyscallError
	)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return errRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return errReset
	case errors.Is(err, syscall.EHOSTUNREACH):
		return errUnreachable
	case errors.Is(err, syscall.ENETUNREACH):
		return errNoNetwork
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return timedOut
	case errors.As(err, &dns):
		return errors.New("DNS: " + dns.Err)
	case errors.As(err, &se):
		return se.Err
	case errors.As(err, &op) && op.Err != nil:
		return op.Err
	}
	return err
}

var (
	_ prober = (*tcpCheck)(nil)
	_ prober = (*httpCheck)(nil)
)
