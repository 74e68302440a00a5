package h2proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/meter"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// logged keeps the exchanges a meter logs.
type logged struct {
	mu sync.Mutex
	xs []meter.Exchange
}

func (l *logged) Sample() bool { return true }

func (l *logged) Log(_ string, x *meter.Exchange) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.xs = append(l.xs, *x)
}

// TestRefusedHTTP1Request: on a listener whose HTTP/1.1 connections this
// engine serves (Translate), a refused request head is recorded as the
// HTTP/1.1 engine records its own refusals, the screen's (h1Screen) as
// net/http's (of a head the screen passed: TestRefusalIsTheLastWrite),
// before any handler saw it: the connection
// ends as bad_request, and the listener's meter (and access log) gets a
// request with the status the client got, after the requests served
// before it.
func TestRefusedHTTP1Request(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		status     int
	}{
		{"a header line without a colon", "GET /bad HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n", 400},
		{"a transfer coding it does not know", "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
		// Refused before it ends.
		{"a head past MaxHeaderBytes", "GET /bad HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", 2<<20) + "\r\n\r\n", 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log logged
			m := meter.NewListener("web", &log)
			ep := backendOf(t, func(http.ResponseWriter, *http.Request) {}, false)
			client, ended := serveHTTP1(t, engine(t, &httpproxy.Config{Director: pickDirector{ep}, Meter: m}, false))
			go io.WriteString(client, "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n"+tc.head)
			br := bufio.NewReader(client)
			var body []byte
			for i, want := range []int{200, tc.status} {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("response %d: %v", i+1, err)
				}
				body, _ = io.ReadAll(resp.Body)
				if resp.StatusCode != want {
					t.Fatalf("response %d: %s, want %d", i+1, resp.Status, want)
				}
			}
			client.Close()
			select {
			case why := <-ended:
				if why != sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST {
					t.Errorf("the connection ended as %v, want BAD_REQUEST", why)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the connection did not end")
			}
			log.mu.Lock()
			defer log.mu.Unlock()
			if len(log.xs) != 2 || log.xs[0].Status != 200 || log.xs[1].Status != tc.status || log.xs[1].Cause != sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST ||
				log.xs[1].Proto != meter.ProtoHTTP11 || log.xs[1].Client.Port() != 50000 || log.xs[1].BytesIn != 0 || log.xs[1].BytesOut != uint64(len(body)) {
				t.Errorf("logged %+v\nwant the 200, then the %d with cause BAD_REQUEST, its client, and %d bytes out (the answer's body)", log.xs, tc.status, len(body))
			}
			if c := m.Counts(); c.Requests[meter.ClassOf(tc.status)] != 1 {
				t.Errorf("the listener counted %v, want one %d", c.Requests, tc.status)
			}
		})
	}
}

// discardConn is a connection whose writes go nowhere.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }

// TestRefusalIsTheLastWrite: a response body that starts a write with
// what net/http's refusals start with is no refusal when more is written
// on the connection after it; net/http's own refusal is its last write.
func TestRefusalIsTheLastWrite(t *testing.T) {
	answer := "HTTP/1.1 400 Bad Request" + refusalHeaders + "400 Bad Request"
	c := &countConn{Conn: discardConn{}, screen: &h1Screen{}}
	c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 103\r\n\r\n"))
	c.Write([]byte(answer)) // the body
	if r := c.refusal(); r == nil || r.status != 400 || r.body != uint64(len("400 Bad Request")) {
		t.Fatalf("refusal as the last write: %+v, want status 400 and its body", r)
	}
	c.Write([]byte("HTTP/1.1 204 No Content\r\n\r\n"))
	if r := c.refusal(); r != nil {
		t.Errorf("refusal with a response after it: %+v, want none", r)
	}
	h2 := &countConn{Conn: discardConn{}}
	h2.Write([]byte(answer))
	if r := h2.refusal(); r != nil {
		t.Errorf("an HTTP/2 connection noted a refusal: %+v", r)
	}
}

// TestRefusalsAnsweredAsTheHTTP1Engine: the client of a listener whose
// HTTP/1.1 connections this engine serves (Translate) gets, for a head
// the HTTP/1.1 engine refuses, the answer that engine gives, byte for
// byte, after the answers to the requests before it: its status (501 for
// a transfer coding it does not know, 505 for an HTTP version it does not
// speak, 414 and 431 for the listener's limits), the text that says why,
// no body for a HEAD request, and the connection closed, as soon as that
// engine answers. net/http alone answers a plain 400 to most of them.
func TestRefusalsAnsweredAsTheHTTP1Engine(t *testing.T) {
	ep := backendOf(t, func(http.ResponseWriter, *http.Request) {}, false)
	cfg := &httpproxy.Config{Director: pickDirector{ep}, MaxHeaderBytes: 512, MaxHeaderCount: 4, MaxURILength: 64}
	for _, tc := range []struct{ name, head, status string }{
		// The listener's limits, measured on the head as sent.
		{"a target over max_uri_length", "GET /" + strings.Repeat("u", 64) + " HTTP/1.1\r\nHost: a\r\n\r\n", "414"},
		{"more fields than max_header_count", "GET /bad HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", "431"},
		{"a head over max_header_bytes", "GET /bad HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("x", 512) + "\r\n\r\n", "431"},
		// Answered before the head ends, as the HTTP/1.1 engine answers
		// them: the connection is not held until request_header_timeout.
		{"a head over max_header_bytes, not whole", "GET /bad HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("x", 600), "431"},
		{"a target over max_uri_length, head not whole", "GET /" + strings.Repeat("u", 64) + " HTTP/1.1\r\n", "414"},
		{"an HTTP/0.9 request line", "GET /\r\n", "400"},
		{"a header line without a colon", "GET /bad HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n", "400"},
		{"Content-Length with chunked", "POST /bad HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "400"},
		{"a transfer coding it does not know", "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "501"},
		{"HTTP/2.0 in a request line", "GET /bad HTTP/2.0\r\nHost: a\r\n\r\n", "505"},
		{"a HEAD request with two Hosts", "HEAD /bad HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"},
		{"too many empty lines", "\r\n\r\n\r\n\r\n\r\nGET /bad HTTP/1.1\r\nHost: a\r\n\r\n", "400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, _ := lastAnswer(t, http1Engine(cfg), 0, okGET+tc.head, 1)
			got, _ := lastAnswer(t, this(t, cfg, nil), 0, okGET+tc.head, 1)
			if got != want || !strings.HasPrefix(want, "HTTP/1.1 "+tc.status+" ") {
				t.Errorf("this engine answered\n%q\nthe HTTP/1.1 engine (want %s)\n%q", got, tc.status, want)
			}
		})
	}
}

// TestHeadNotInTimeAnswered: the client of a listener whose HTTP/1.1
// connections this engine serves (Translate) that does not complete a
// request head within request_header_timeout of its first byte gets the
// HTTP/1.1 engine's 408, byte for byte, and the connection closes as
// client_timeout: its first head, sent at once or late, a head after a
// response, and a head sent behind a request still being served, which
// is not cut for it, as the HTTP/1.1 engine reads no head before the
// response is done. net/http alone closes without a word, bounds a first
// head from the connection's start, and waits for a later head its idle
// timeout, here a minute: longer than the client waits. A connection that
// sends nothing is closed without a word.
func TestHeadNotInTimeAnswered(t *testing.T) {
	ep := backendOf(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(800 * time.Millisecond)
		}
		io.WriteString(w, "done")
	}, false)
	cfg := &httpproxy.Config{Director: pickDirector{ep}, RequestHeaderTimeout: 300 * time.Millisecond, IdleTimeout: time.Minute}
	const partial = "GET /late HTTP/1.1\r\nHost: a\r\n"
	for _, tc := range []struct {
		name string
		late time.Duration
		sent string
		// answered: the requests answered 200 before the 408
		answered int
	}{
		{"the first head", 0, partial, 0},
		{"the first head, late", 200 * time.Millisecond, partial, 0},
		{"a head after a response", 0, okGET + partial, 1},
		{"a head behind a request served", 0, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n" + partial, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, _ := lastAnswer(t, http1Engine(cfg), tc.late, tc.sent, tc.answered)
			ended := make(chan sluicev1.CloseReason, 1)
			got, waited := lastAnswer(t, this(t, cfg, ended), tc.late, tc.sent, tc.answered)
			if got != want || !strings.HasPrefix(want, "HTTP/1.1 408 ") {
				t.Errorf("this engine answered\n%q\nthe HTTP/1.1 engine (want 408)\n%q", got, want)
			}
			if waited < cfg.RequestHeaderTimeout-50*time.Millisecond {
				t.Errorf("the 408 came %v after the head started, want request_header_timeout (%v) at least", waited, cfg.RequestHeaderTimeout)
			}
			if why := <-ended; why != sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT {
				t.Errorf("the connection ended as %v, want CLIENT_TIMEOUT", why)
			}
		})
	}
	// A connection that sends nothing is closed as quietly as the HTTP/1.1
	// engine closes it (net/http's own bound on it is off: boundHead).
	ended := make(chan sluicev1.CloseReason, 1)
	if got, waited := lastAnswer(t, this(t, cfg, ended), 0, "", 0); got != "" || waited < cfg.RequestHeaderTimeout-50*time.Millisecond {
		t.Errorf("a connection that sent nothing got %q, closed after %v; want nothing, after request_header_timeout", got, waited)
	}
	if why := <-ended; why != sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT {
		t.Errorf("the connection that sent nothing ended as %v, want CLIENT_TIMEOUT", why)
	}
}

// TestHeadEndsTheIdleWait: on a listener whose HTTP/1.1 connections this
// engine serves (Translate), a head that starts within idle_timeout has
// request_header_timeout from its first byte, as on the HTTP/1.1 engine,
// when idle_timeout is the shorter: the idle wait ended with that byte.
func TestHeadEndsTheIdleWait(t *testing.T) {
	ep := backendOf(t, func(http.ResponseWriter, *http.Request) {}, false)
	cfg := &httpproxy.Config{Director: pickDirector{ep}, RequestHeaderTimeout: 600 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}
	client, ended := serveHTTP1(t, engine(t, cfg, false))
	go io.WriteString(client, okGET)
	br := bufio.NewReader(client)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the GET: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	time.Sleep(150 * time.Millisecond) // within idle_timeout
	go io.WriteString(client, "GET /late HTTP/1.1\r\n")
	sent := time.Now()
	rest, err := io.ReadAll(br)
	if waited := time.Since(sent); err != nil || !bytes.HasPrefix(rest, []byte("HTTP/1.1 408 ")) || waited < cfg.RequestHeaderTimeout-50*time.Millisecond {
		t.Errorf("after the head started: %q, %v, %v later; want a 408 after request_header_timeout (%v)", rest, err, waited, cfg.RequestHeaderTimeout)
	}
	if why := <-ended; why != sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT {
		t.Errorf("the connection ended as %v, want CLIENT_TIMEOUT", why)
	}
}

const okGET = "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n"

// http1Engine serves a client connection with the HTTP/1.1 engine.
func http1Engine(cfg *httpproxy.Config) func(net.Conn) {
	return func(c net.Conn) { httpproxy.NewServer(cfg, nil).ServeConn(c) }
}

// this serves a client connection with this engine, as it serves the
// HTTP/1.x ones of a translating listener (serving).
func this(t *testing.T, cfg *httpproxy.Config, ended chan<- sluicev1.CloseReason) func(net.Conn) {
	return serving(engine(t, cfg, false), ended)
}

// lastAnswer has serve serve a client connection that sends sent, late
// after it opened, and returns what the client got after the first
// answered responses, each a 200, until the connection closed (within
// 10 s), and how long after them (or after sending) the connection closed.
func lastAnswer(t *testing.T, serve func(net.Conn), late time.Duration, sent string, answered int) (string, time.Duration) {
	t.Helper()
	client, server := net.Pipe()
	defer client.Close()
	go func() {
		defer server.Close()
		serve(server)
	}()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	time.Sleep(late)
	go io.WriteString(client, sent)
	br := bufio.NewReader(client)
	for i := range answered {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no response %d: %v", i+1, err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != 200 {
			t.Fatalf("response %d: %s, body %v", i+1, resp.Status, err)
		}
	}
	since := time.Now()
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("after %q: %v, want the connection closed", rest, err)
	}
	return string(rest), time.Since(since)
}

// TestOptionsAsteriskForwarded: OPTIONS * from an HTTP/1.1 client of a
// listener whose HTTP/1.1 connections this engine serves (Translate) goes
// to the endpoint, over HTTP/1.1 or HTTP/2, as the HTTP/1.1 engine
// forwards it; net/http alone answers it itself.
func TestOptionsAsteriskForwarded(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		ep := backendOf(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", "GET, OPTIONS")
			io.WriteString(w, r.Method+" "+r.RequestURI)
		}, h2)
		client, _ := serveHTTP1(t, engine(t, &httpproxy.Config{Director: pickDirector{ep}}, h2))
		go io.WriteString(client, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(client), nil)
		if err != nil {
			t.Fatalf("h2 %v: no answer: %v", h2, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "OPTIONS *" || resp.Header.Get("Allow") != "GET, OPTIONS" {
			t.Errorf("h2 %v: %s %q (Allow %q), want the endpoint's 200 \"OPTIONS *\"", h2, resp.Status, body, resp.Header.Get("Allow"))
		}
	}
}

// TestRequestsWithoutHostForwarded: an HTTP/1.0 request without Host, and
// one with an empty Host, reach the endpoint from the client of a
// listener whose HTTP/1.x connections this engine serves (Translate), as
// they do through the HTTP/1.1 engine: the endpoint gets the Host of an
// absolute-form target, else its own address. Before, this engine refused
// them all with 400. One difference stays: for an empty Host, the
// endpoint gets its own address here, where the HTTP/1.1 engine forwards
// the empty Host (Go's client cannot send one).
func TestRequestsWithoutHostForwarded(t *testing.T) {
	ep := backendOf(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Method+" "+r.URL.Path+" to "+r.Host)
	}, false)
	cfg := &httpproxy.Config{Director: pickDirector{ep}}
	for _, tc := range []struct{ name, head, body string }{
		{"HTTP/1.0 without Host", "GET /a HTTP/1.0\r\n\r\n", "GET /a to " + ep.Addr},
		{"HTTP/1.0 with an empty Host", "GET /b HTTP/1.0\r\nHost:\r\n\r\n", ""},
		{"HTTP/1.0 in absolute form", "GET http://x.example/c HTTP/1.0\r\n\r\n", "GET /c to x.example"},
		{"HTTP/1.1 with an empty Host", "GET /d HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, e := range []struct {
				name  string
				serve func(net.Conn)
			}{{"the HTTP/1.1 engine", http1Engine(cfg)}, {"this engine", this(t, cfg, nil)}} {
				client, server := net.Pipe()
				go func() {
					defer server.Close()
					e.serve(server)
				}()
				client.SetDeadline(time.Now().Add(10 * time.Second))
				go io.WriteString(client, tc.head)
				resp, err := http.ReadResponse(bufio.NewReader(client), nil)
				if err != nil {
					t.Fatalf("%s: no answer: %v", e.name, err)
				}
				body, _ := io.ReadAll(resp.Body)
				client.Close()
				if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "GET /") || tc.body != "" && string(body) != tc.body {
					t.Errorf("%s: %s %q, want the endpoint's 200 %q", e.name, resp.Status, body, tc.body)
				}
			}
		})
	}
}

// TestCanonicalPathForwarded: with NormalizePath and MergeSlashes, the
// endpoint gets the canonical path the rules saw, through this engine as
// through the HTTP/1.1 engine, over HTTP/1.1 and over HTTP/2 to the
// endpoint; the query goes as sent.
func TestCanonicalPathForwarded(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		ep := backendOf(t, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.Method+" "+r.RequestURI)
		}, h2)
		for _, e := range []struct {
			name  string
			serve func(*httpproxy.Config) func(net.Conn)
		}{
			{"the HTTP/1.1 engine", http1Engine},
			{"this engine", func(cfg *httpproxy.Config) func(net.Conn) { return this(t, cfg, nil) }},
		} {
			if h2 && e.name == "the HTTP/1.1 engine" {
				continue // it speaks HTTP/1.1 to endpoints
			}
			var log logged
			cfg := &httpproxy.Config{Director: pickDirector{ep}, NormalizePath: true, MergeSlashes: true, Meter: meter.NewListener("web", &log)}
			client, server := net.Pipe()
			served := make(chan struct{})
			go func() {
				defer close(served)
				defer server.Close()
				e.serve(cfg)(server)
			}()
			client.SetDeadline(time.Now().Add(10 * time.Second))
			go io.WriteString(client, "GET /x/..//%61dmin/.?q=/../%61 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(client), nil)
			if err != nil {
				t.Fatalf("%s (h2 %v): no answer: %v", e.name, h2, err)
			}
			body, _ := io.ReadAll(resp.Body)
			client.Close()
			if want := "GET /admin/?q=/../%61"; resp.StatusCode != 200 || string(body) != want {
				t.Errorf("%s (h2 %v): %s %q, want the endpoint's 200 %q", e.name, h2, resp.Status, body, want)
			}
			<-served
			log.mu.Lock()
			if len(log.xs) != 1 || string(log.xs[0].Path) != "/admin/?q=/../%61" {
				t.Errorf("%s (h2 %v): logged %+v, want the canonical path", e.name, h2, log.xs)
			}
			log.mu.Unlock()
		}
	}
}
