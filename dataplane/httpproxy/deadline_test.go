package httpproxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// TestResponseTimeoutOnAReusedConnection sends a request that its endpoint
// never answers on a pooled endpoint connection, right after an exchange
// that used the connection. The client gets its 504 at ResponseTimeout,
// not before and not a slice later, and the wait wakes only a few times,
// whatever the exchange before left of the connection's deadlines: the
// one set for it (which the next may keep, see armEndpoint), one set for
// a longer ResponseTimeout, or one the watches moved (an Expect whose
// body came unasked, a body that streamed long enough to be watched for
// an early answer).
func TestResponseTimeoutOnAReusedConnection(t *testing.T) {
	const timeout = 300 * time.Millisecond
	for _, tc := range []struct {
		name  string
		first time.Duration // ResponseTimeout for the first exchange
		send  func(c net.Conn)
	}{
		{"after a GET", timeout, func(c net.Conn) {
			io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
		}},
		{"after a GET with a longer timeout", defaultTestTimeout, func(c net.Conn) {
			io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
		}},
		{"after an Expect whose body came unasked", timeout, func(c net.Conn) {
			io.WriteString(c, "POST /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
			time.Sleep(10 * time.Millisecond) // the head goes alone
			io.WriteString(c, "hello")
		}},
		{"after a body that streamed", timeout, func(c net.Conn) {
			io.WriteString(c, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel")
			time.Sleep(2 * answerWatchDelay) // watched, and within the slack kept
			io.WriteString(c, "lo")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var conns atomic.Int32
			addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
				conns.Add(1)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if req.URL.Path == "/hang" {
						io.Copy(io.Discard, br) // never answers
						return
					}
					if _, err := io.Copy(io.Discard, req.Body); err != nil {
						return
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			})
			dir := &rrDirector{eps: []*upstream.Endpoint{upstream.New("web", "b1", addr)}}
			p := startProxy(t, &Config{Director: dir, ResponseTimeout: tc.first})
			conn := p.dial()
			br := bufio.NewReader(conn)
			tc.send(conn)
			if r := readResponse(t, br, "GET"); r.code != 200 || r.body != "ok" {
				t.Fatalf("first request: %s %q", r.status, r.body)
			}
			stalls := p.srv.stalls.Load()
			if stalls > 2 {
				t.Errorf("the first exchange's waits on its endpoint woke %d times, want at most 2", stalls)
			}
			p.srv.SetConfig(&Config{Director: dir, ResponseTimeout: timeout})

			start := time.Now()
			io.WriteString(conn, "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
			r := readResponse(t, br, "GET")
			took := time.Since(start)
			if r.code != 504 {
				t.Fatalf("got %s, want 504", r.status)
			}
			if n := conns.Load(); n != 1 {
				t.Fatalf("the endpoint had %d connections, want the first one reused", n)
			}
			if took < timeout || took > timeout+500*time.Millisecond {
				t.Errorf("504 after %v, want it at ResponseTimeout %v", took, timeout)
			}
			if n := p.srv.stalls.Load() - stalls; n > 3 {
				t.Errorf("the wait for the answer woke %d times, want at most 3", n)
			}
		})
	}
}
