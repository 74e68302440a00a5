package httpproxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// An endpoint that resets a connection while it drains (before
// drain_timeout, which would have closed the connection here) closed it
// itself: the client's 502 says so rather than that the endpoint was
// removed, and a WebSocket tunnel's record says server_closed, not
// drained.
func TestResetWhileDrainingIsTheEndpoints(t *testing.T) {
	t.Run("request", func(t *testing.T) {
		headIn, reset := make(chan struct{}), make(chan struct{})
		ep := upstream.New("web", "b1", rawBackend(t, func(c net.Conn, br *bufio.Reader) {
			readRequestHead(br)
			close(headIn)
			<-reset
			noTimeWait(c)
			c.Close()
		}))
		p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
		conn := p.dial()
		defer conn.Close()
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		<-headIn
		ep.Retire(time.Minute, time.Minute)
		defer ep.Shutdown()
		close(reset)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 502 || string(body) != "the endpoint closed the connection\n" {
			t.Errorf("answer %d %q, want 502 \"the endpoint closed the connection\"", resp.StatusCode, body)
		}
	})
	t.Run("tunnel", func(t *testing.T) {
		reset := make(chan struct{})
		ep := upstream.New("web", "b1", rawBackend(t, func(c net.Conn, br *bufio.Reader) {
			readRequestHead(br)
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
			<-reset
			noTimeWait(c)
			c.Close()
		}))
		p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
		_, br := openTunnel(t, p)
		ep.Retire(time.Minute, time.Minute)
		defer ep.Shutdown()
		close(reset)
		expectEOF(t, br)
		if ci := p.info(); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED {
			t.Errorf("reason %v, want SERVER_CLOSED", ci.Reason)
		}
	})
}
