package httpproxy

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
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
		// A whole answer after one that has no body by its method or
		// status, soon: it would pass for the next request's answer, and
		// go to another client.
		{"answer after HEAD", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL", false, 100 * time.Millisecond},
		{"answer after 204", "GET 204", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL", false, 100 * time.Millisecond},
		{"answer after 304", "GET 304", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL", false, 100 * time.Millisecond},
	} {
		// With a PROXY header to the endpoint, each client keeps its
		// endpoint connection to itself (private.go).
		for _, sendProxy := range []int{0, 1} {
			t.Run(fmt.Sprintf("%s, send_proxy %d", tt.name, sendProxy), func(t *testing.T) {
				// "GET 204": the first answer is a 204, with no body.
				method, status, _ := strings.Cut(tt.method, " ")
				var conns atomic.Int32
				wroteLate := make(chan struct{}) // closed once the late bytes are sent
				addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
					n := conns.Add(1)
					lateDue := n == 1
					if sendProxy != 0 {
						if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "PROXY TCP4 ") {
							t.Errorf("the endpoint read %q, %v; want a PROXY header", line, err)
							return
						}
					}
					for {
						req, err := http.ReadRequest(br)
						if err != nil {
							return
						}
						io.Copy(io.Discard, req.Body)
						body := fmt.Sprintf("conn%d", n)
						switch {
						case lateDue && status != "":
							fmt.Fprintf(c, "HTTP/1.1 %s Whatever\r\n\r\n", status)
						case req.Method == "HEAD":
							fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(body))
						default:
							fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
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
				ep.SetSendProxy(sendProxy)
				p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
				c := p.dial()
				br := bufio.NewReader(c)
				fmt.Fprintf(c, "%s / HTTP/1.1\r\nHost: x\r\n\r\n", method)
				if r := readResponse(t, br, method); r.code != cmp.Or(atoi(status), 200) {
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
}

// atoi is s as a number, 0 when it is none.
func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
