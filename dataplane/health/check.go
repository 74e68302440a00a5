package health

import (
	"context"
	"net"
	"time"
)

// A prober runs one check of one endpoint. check is called from the probe's
// goroutine only, one call at a time; it must return soon after ctx is
// cancelled and within about the check timeout otherwise. A check that
// cannot conclude (timeout, refused, garbage) reports false; it never
// panics on what the endpoint sends.
type prober interface {
	check(ctx context.Context) bool
}

// newProber returns the prober for s, whose defaults are already filled in.
func newProber(s Spec) prober {
	if s.HTTPPath != "" {
		return newHTTPCheck(s)
	}
	return &tcpCheck{addr: s.Addr, timeout: s.Timeout}
}

// tcpCheck is HAProxy's plain "check": the endpoint is up if it accepts a
// TCP connection within the timeout. The connection is closed at once.
type tcpCheck struct {
	addr    string
	timeout time.Duration
}

func (t *tcpCheck) check(ctx context.Context) bool {
	d := net.Dialer{Timeout: t.timeout}
	conn, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

var (
	_ prober = (*tcpCheck)(nil)
	_ prober = (*httpCheck)(nil)
)
