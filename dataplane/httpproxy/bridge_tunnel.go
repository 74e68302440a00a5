package httpproxy

import (
	"net"
	"net/http"
	"time"

	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// This file is what the HTTP/2 engine needs to tunnel an HTTP/1.1 Upgrade
// request (WebSocket) of a connection it serves (Config.Translate) as this
// engine does: which requests ask for it, and the relay of tunnel.go
// itself, so that a tunnel idles out, half-closes, and records why it
// ended the same way whichever engine set it up. Nothing here is on the
// HTTP/1.1 request path.

// ForwardUpgrade adds to dst, when r asks to switch protocols (Connection:
// upgrade and an Upgrade other than h2c, as Load read it: the caller checks
// that the client spoke HTTP/1.1), the fields that ask for it as
// appendRequestHead sends them: its Upgrade fields and "Connection:
// upgrade", which ForwardHeader leaves out. It reports whether r asks.
func (r *Request) ForwardUpgrade(dst http.Header) bool {
	if !r.tunnel {
		return false
	}
	for i := 0; i < r.nf; i++ {
		if f := &r.fields[i]; f.kind == fieldUpgrade && !f.drop {
			dst.Add("Upgrade", string(f.value.of(r.head)))
		}
	}
	dst.Set("Connection", "upgrade")
	return true
}

// RelayTunnel runs the tunnel between client and bc, a connection to ep
// from ep.DialWithHeader whose 101 Switching Protocols went to the client
// already, with what either side sent past the heads passed on: it copies
// both ways until each direction ended (its destination then half-closed,
// when it can be) or nothing moved either way for idle, and returns the
// bytes carried from the client (up) and to it (down), and the close
// reason of the client connection. It counts those bytes in ep's meters
// and in m (nil: none) as they move. It closes neither connection.
func RelayTunnel(client, bc net.Conn, ep *upstream.Endpoint, m *meter.Listener, idle time.Duration) (up, down uint64, reason sluicev1.CloseReason) {
	t := &tunnelState{client: client, bc: bc, ep: ep, m: m, idle: idle}
	t.last.Store(time.Now().UnixNano())
	client.SetDeadline(time.Time{})
	bc.SetDeadline(time.Time{})
	up, down = t.relay(make([]byte, tunnelBuf), make([]byte, tunnelBuf))
	return up, down, sluicev1.CloseReason(t.reason.Load())
}

// TunnelWriteReason is the close reason of a client connection whose
// tunnel ended before RelayTunnel ran, with err failing a write of what came
// behind the heads: to bc, the connection to ep, when toEndpoint, else to
// the client. It maps err as the relay maps its own failed writes.
func TunnelWriteReason(err error, ep *upstream.Endpoint, bc net.Conn, toEndpoint bool) sluicev1.CloseReason {
	return (&tunnelState{ep: ep, bc: bc}).reasonFor(err, toEndpoint)
}

// tunnelBuf is the size of each direction's buffer in RelayTunnel.
const tunnelBuf = 32 << 10
