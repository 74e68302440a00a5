//go:build linux

package node

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// stallingBackend answers "a" but for two paths, whose requests it holds
// until release is closed or their connection closes: /hold gets no
// answer meanwhile, /body the head of a 10-byte answer and its first 3
// bytes. arrived gets each such request as it comes; cancelled gets one
// whose connection closed before release.
func stallingBackend(t *testing.T) (addr string, arrived, cancelled <-chan string, release chan struct{}) {
	t.Helper()
	arr, canc, rel := make(chan string, 8), make(chan string, 8), make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hold", "/body":
		default:
			io.WriteString(w, "a")
			return
		}
		if r.URL.Path == "/body" {
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "abc")
			w.(http.Flusher).Flush()
		}
		arr <- r.URL.Path
		select {
		case <-r.Context().Done(): // net/http saw the connection close
			canc <- r.URL.Path
		case <-rel:
			if r.URL.Path == "/body" {
				io.WriteString(w, "defghij")
			} else {
				io.WriteString(w, "a")
			}
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), arr, canc, rel
}

// TestClientLeavesAtTheEndpoint: an HTTP/1.1 request whose client leaves
// while the request is at the endpoint (waiting for the answer, or for the
// rest of its body) is given up there: the node closes the endpoint's
// connection within a second or two, not when response_timeout (a minute
// here) runs out, and records the client connection CLIENT_CLOSED. A
// reset always gives it up; a close, or a shut sending side, only with
// the cluster's abort_on_close (Envoy's way), over TLS too and for a
// request served from inside its connection's idle read. Without it, as
// in HAProxy, the request waits on for its answer, which a client that
// only shut its sending side still reads; with it, a client that only
// sent its next request ahead keeps its request.
func TestClientLeavesAtTheEndpoint(t *testing.T) {
	const next = "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
	closed := func(c net.Conn) { c.Close() }
	for _, tc := range []struct {
		name     string
		abort    bool // the cluster's abort_on_close
		tls      bool
		second   bool   // the held request is the connection's second
		path     string // /hold, or /body: the answer stalls midway
		end      func(c net.Conn)
		gone     bool // the node gives the request up
		readable bool // the client still reads after end: it gets the answers
	}{
		{name: "closed", abort: true, path: "/hold", end: closed, gone: true},
		{name: "closed, over TLS", abort: true, tls: true, path: "/hold", end: closed, gone: true},
		{name: "closed, the second request", abort: true, second: true, path: "/hold", end: closed, gone: true},
		{name: "closed during the answer's body", abort: true, path: "/body", end: closed, gone: true},
		{name: "shut", abort: true, path: "/hold", end: func(c net.Conn) { c.(*net.TCPConn).CloseWrite() }, gone: true},
		{name: "reset, without abort_on_close", path: "/hold", end: func(c net.Conn) {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}, gone: true},
		{name: "closed, without abort_on_close", path: "/hold", end: closed},
		{name: "shut, without abort_on_close", path: "/hold", readable: true, end: func(c net.Conn) {
			c.(*net.TCPConn).CloseWrite()
		}},
		{name: "a next request sent ahead", abort: true, path: "/hold", readable: true, end: func(c net.Conn) {
			io.WriteString(c, next)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n, rec := newRecordingNode(t)
			be, arrived, cancelled, release := stallingBackend(t)
			web := freeAddr(t)
			extra := ""
			if tc.tls {
				extra = ", " + listenerTLS(t)
			}
			if err := n.Apply("1", parse(t, `
clusters: [{ name: c, abort_on_close: %t, endpoints: [{ name: e, address: "%s" }] }]
listeners:
  - { name: web, address: "%s", protocol: HTTP, default_cluster: c, http: { response_timeout: 60s }%s }
`, tc.abort, be, web, extra)); err != nil {
				t.Fatal(err)
			}
			c := dialListener(t, web, tc.tls)
			c.SetDeadline(time.Now().Add(2 * testTimeout))
			br := bufio.NewReader(c)
			if tc.second {
				io.WriteString(c, "GET /before HTTP/1.1\r\nHost: a\r\n\r\n")
				wantAnswer(t, br, "/before", "a")
			}
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", tc.path)
			select {
			case <-arrived:
			case <-time.After(testTimeout):
				t.Fatal("the request did not reach the endpoint")
			}
			if tc.path == "/body" {
				// The head and the first bytes reached the client.
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("the answer's head: %v", err)
				}
				if resp.ContentLength != 10 {
					t.Fatalf("the answer: Content-Length %d, want 10", resp.ContentLength)
				}
				p := make([]byte, 3)
				if _, err := io.ReadFull(resp.Body, p); err != nil || string(p) != "abc" {
					t.Fatalf("the answer's first bytes: %q, %v", p, err)
				}
			}
			left := time.Now()
			tc.end(c)
			if !tc.gone {
				// Two of the node's looks at the client pass: the request
				// is still at the endpoint.
				select {
				case p := <-cancelled:
					t.Fatalf("the endpoint's connection for %s closed %v after the client's end; want it open", p, time.Since(left).Round(time.Millisecond))
				case <-time.After(2500 * time.Millisecond):
				}
				close(release)
				if tc.readable {
					wantAnswer(t, br, tc.path, "a")
				}
				if tc.readable && tc.abort {
					wantAnswer(t, br, "/next", "a")
				}
				return
			}
			select {
			case <-cancelled:
				t.Logf("the endpoint's connection closed %v after the client's end", time.Since(left).Round(time.Millisecond))
			case <-time.After(testTimeout):
				t.Fatal("the endpoint's connection is still open: the request was not given up")
			}
			ci := rec.wait(t, "web", "the record of the client connection", func(conntrack.ConnInfo) bool { return true })
			if ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED {
				t.Errorf("record: reason %v, want CLIENT_CLOSED", ci.Reason)
			}
			if st := n.current.Load(); st != nil {
				if s := (*st)["c"].members[0].Endpoint.Stats(); s.Responses5xx != 0 || s.ConnectErrors != 0 {
					t.Errorf("the endpoint's counters: %d 5xx, %d connect errors; want none: it did nothing wrong", s.Responses5xx, s.ConnectErrors)
				}
			}
		})
	}
}
