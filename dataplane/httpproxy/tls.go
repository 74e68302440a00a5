package httpproxy

import (
	"crypto/tls"
	"errors"
	"net"
	"time"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// handshake completes the TLS handshake of cc's connection within the
// configured timeout and makes cc read and write through TLS from then on
// (ServeConn set up no splice or raw socket access for it). It reports
// whether the connection may serve requests; if not, cc.reason says why.
func (cc *clientConn) handshake(cfg *Config) bool {
	raw := cc.c
	tc := tls.Server(raw, cfg.TLS)
	raw.SetDeadline(time.Now().Add(cfg.TLSHandshakeTimeout))
	if err := tc.Handshake(); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			cc.reason = sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT
		} else {
			cc.reason = sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST
		}
		return false
	}
	raw.SetDeadline(time.Time{})
	cc.c = tc
	cc.tls = true
	if sn := tc.ConnectionState().ServerName; sn != "" {
		cc.sni = []byte(sn) // once per connection
	}
	return true
}
