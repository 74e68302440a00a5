package tcpproxy

import (
	"io"
	"net"
	"testing"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestResetIsAClose: a client or an endpoint that ends the session with a
// reset (SO_LINGER 0, as many clients and servers close) closed it, as
// with a FIN: the record says client_closed or server_closed, not
// io_error, whether the halves were parked or not (as an HTTP listener's
// tunnels say it, and HAProxy's client and server aborts).
func TestResetIsAClose(t *testing.T) {
	for _, tt := range []struct {
		name   string
		parked bool
		server bool // the endpoint resets, else the client
		want   sluicev1.CloseReason
	}{
		{"client", false, false, sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED},
		{"client parked", true, false, sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED},
		{"server", false, true, sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED},
		{"server parked", true, true, sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reset := make(chan struct{})
			backend := startBackend(t, func(c net.Conn) {
				defer c.Close()
				b := make([]byte, 4)
				if _, err := io.ReadFull(c, b); err != nil {
					return
				}
				c.Write(b)
				if tt.server {
					<-reset
					c.(*net.TCPConn).SetLinger(0)
					return
				}
				io.Copy(io.Discard, c)
			})
			c, ep, s, infos := pingSession(t, backend)
			if tt.parked {
				waitParked(t, s, ep, 1)
			}
			if tt.server {
				close(reset)
				c.Read(make([]byte, 1)) // until the proxy closes it
			} else {
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}
			ci := waitInfo(t, infos)
			if ci.Reason != tt.want || ci.BytesIn != 4 || ci.BytesOut != 4 {
				t.Errorf("record: reason %v, %d bytes in, %d out; want %v, 4, 4", ci.Reason, ci.BytesIn, ci.BytesOut, tt.want)
			}
		})
	}
}
