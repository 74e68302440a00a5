package httpproxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// TestStaleBytesOnPooledConnection: an endpoint connection that received
// bytes while it sat in the pool, bytes no request asked for, carries no
// further request: each client gets the answer to its own request. The
// endpoint's first connection answers the first request, then, late,
// writes what the case says; every later connection answers with its
// number.
func TestStaleBytesOnPooledConnection(t *testing.T) {
	for _, tt := range []struct {
		name   string
		method string        // of the first request
		late   string        // written 50 ms after the first answer
		close  bool          // and the connection then closed
		idle   time.Duration // before the second request
	}{
		// Servers answer an idle keep-alive connection they time out with
		// a 408 before closing it (golang/go#32310).
		{"408 then close", "GET", "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", true, 200 * time.Millisecond},
		{"408 then close, long idle", "GET", "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", true, 2 * probeIdleAfter},
		// A body after the head of an answer to HEAD, in a later segment.
		{"body after HEAD", "HEAD", "stale", false, 200 * time.Millisecond},
		{"body after HEAD, long idle", "HEAD", "stale", false, 2 * probeIdleAfter},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var conns atomic.Int32
			wroteLate := make(chan struct{}) // closed once the late bytes are sent
			addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
				n := conns.Add(1)
				lateDue := n == 1
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					body := fmt.Sprintf("conn%d", n)
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(body))
					if req.Method != "HEAD" {
						io.WriteString(c, body)
					}
					if lateDue {
						lateDue = false
						time.Sleep(50 * time.Millisecond)
						io.WriteString(c, tt.late)
						if tt.close {
							c.Close() // the next read fails: the loop ends
						}
						close(wroteLate)
					}
				}
			})
			ep := upstream.New("web", "a", addr)
			p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
			c := p.dial()
			br := bufio.NewReader(c)
			fmt.Fprintf(c, "%s / HTTP/1.1\r\nHost: x\r\n\r\n", tt.method)
			if r := readResponse(t, br, tt.method); r.code != 200 {
				t.Fatalf("first request: %s", r.status)
			}
			answered := time.Now() // the connection was pooled before
			// The late bytes reach the pooled connection before the next
			// request, however late a busy machine runs the endpoint.
			select {
			case <-wroteLate:
			case <-time.After(defaultTestTimeout):
				t.Fatal("the endpoint did not write its late bytes")
			}
			time.Sleep(time.Until(answered.Add(tt.idle)))
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			if r := readResponse(t, br, "GET"); r.code != 200 || r.body != "conn2" {
				t.Errorf("second request: %d %q, want 200 conn2 (its own answer, on a new connection)", r.code, r.body)
			}
			// And the client connection goes on as usual.
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			if r := readResponse(t, br, "GET"); r.code != 200 || r.body != "conn2" {
				t.Errorf("third request: %d %q, want 200 conn2", r.code, r.body)
			}
		})
	}
}
