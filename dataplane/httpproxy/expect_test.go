package httpproxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// TestExpectContinueBodyWithoutContinue: an endpoint that reads the body
// of an Expect: 100-continue request without sending 100 Continue (Python's
// http.server, an HTTP/1.0 one) gets the body as soon as the client sends
// it, which the client does after waiting for the 100 a while (curl: 1 s),
// and its answer reaches the client at once, not after the response
// timeout.
func TestExpectContinueBodyWithoutContinue(t *testing.T) {
	addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, _ := io.ReadAll(req.Body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n")
			c.Write(body)
		}
	})
	ep := upstream.New("web", "a", addr)
	for _, mode := range serveModes {
		t.Run(mode.name, func(t *testing.T) {
			p := mode.start(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
			c := p.dial()
			br := bufio.NewReader(c)
			for i := range 2 { // the connection stays usable
				start := time.Now()
				c.SetDeadline(start.Add(5 * time.Second))
				io.WriteString(c, "PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
				time.Sleep(200 * time.Millisecond) // waiting for a 100 that does not come
				io.WriteString(c, "hello")
				r := readResponse(t, br, "PUT")
				if r.code != 200 || r.body != "hello" {
					t.Fatalf("request %d: %s %q, want 200 hello", i, r.status, r.body)
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("request %d answered after %v, want soon after its body", i, d)
				}
			}
		})
	}
}

// TestExpectContinueEmptyBody: Expect: 100-continue on a request whose
// Content-Length is 0 has no body to wait for: its answer is no early one,
// and the client's connection stays open, as a GET's with Expect does.
func TestExpectContinueEmptyBody(t *testing.T) {
	addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	ep := upstream.New("web", "a", addr)
	for _, mode := range serveModes {
		t.Run(mode.name, func(t *testing.T) {
			p := mode.start(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
			c := p.dial()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			for i := range 2 {
				io.WriteString(c, "POST /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n")
				r := readResponse(t, br, "POST")
				if r.code != 200 || r.body != "ok" || r.header("Connection") == "close" {
					t.Fatalf("request %d: %s %q, Connection %q; want 200 ok, the connection kept", i, r.status, r.body, r.header("Connection"))
				}
			}
		})
	}
}

// TestExpectContinueRefusedBodyFollows: an endpoint that refuses an
// Expect: 100-continue request without its body ends the client's
// connection after its answer, although the proxy now watches the client
// for the body: a body the client sends after the answer is never read as
// a request.
func TestExpectContinueRefusedBodyFollows(t *testing.T) {
	var seen atomic.Int32
	addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			seen.Add(1)
			io.WriteString(c, "HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")
		}
	})
	ep := upstream.New("web", "a", addr)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
	c := p.dial()
	br := bufio.NewReader(c)
	body := "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	io.WriteString(c, "PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\nExpect: 100-continue\r\n\r\n")
	r := readResponse(t, br, "PUT")
	if r.code != 417 || r.header("Connection") != "close" {
		t.Fatalf("got %s, Connection %q; want 417, close", r.status, r.header("Connection"))
	}
	io.WriteString(c, body)
	expectEOF(t, br)
	if n := seen.Load(); n != 1 {
		t.Errorf("the endpoint read %d requests, want 1", n)
	}
}
