package httpproxy

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// heldHTTP2 is an HTTP/2 engine that notes the read buffers in use while
// it serves a connection, and what it was handed, then closes it.
type heldHTTP2 struct {
	inUse   chan int
	preread chan []byte
}

func (h heldHTTP2) ServeConn(c net.Conn, _, _ netip.AddrPort, preread []byte, _ bool, _ []byte, _ *ConnInfo) sluicev1.CloseReason {
	h.inUse <- rbClass.inUse()
	h.preread <- preread
	io.Copy(io.Discard, c) // until the client closes
	return sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED
}

func (heldHTTP2) Drain(sluicev1.CloseReason) {}

// TestHandOffLetsGoOfExchange: a connection handed to the HTTP/2 engine
// (h2c with prior knowledge) no longer holds the exchange it was read
// into, its read buffer with it, while the other engine serves it; the
// bytes read are handed on.
func TestHandOffLetsGoOfExchange(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(fmt.Sprint("async=", async), func(t *testing.T) {
			h := heldHTTP2{inUse: make(chan int, 1), preread: make(chan []byte, 1)}
			p := startProxyWith(t, &Config{Director: &rrDirector{}, H2C: true}, async, nil, func(s *Server) { s.SetHTTP2(h) })
			before := rbClass.inUse()
			c := p.dial()
			const sent = h2Preface + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"
			if _, err := io.WriteString(c, sent); err != nil {
				t.Fatal(err)
			}
			select {
			case n := <-h.inUse:
				// At most: connections of tests before may still be
				// giving theirs back.
				if n > before {
					t.Errorf("%d read buffers in use while the HTTP/2 engine serves, want %d at most, as before the connection", n, before)
				}
			case <-time.After(defaultTestTimeout):
				t.Fatal("the connection was not handed to the HTTP/2 engine")
			}
			if got := string(<-h.preread); got != sent {
				t.Errorf("handed on %q, want %q", got, sent)
			}
			c.Close()
			p.info()
		})
	}
}
