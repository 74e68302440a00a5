package httpproxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// closes reports whether the response says the connection closes after it.
func closes(r *rawResponse) bool {
	for _, v := range r.headers["connection"] {
		if strings.EqualFold(v, "close") {
			return true
		}
	}
	return false
}

// DESIGN problem 3: MaxRequestsPerConnection=N closes a keep-alive
// connection after its Nth response, which says so.
func TestMaxRequestsPerConnection(t *testing.T) {
	b := startBackend(t, "b1", nameHandler("b1"))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}, MaxRequestsPerConnection: 3})
	conn := p.dial()
	br := bufio.NewReader(conn)
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(conn, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		r := readResponse(t, br, "GET")
		if r.code != 200 || r.body != fmt.Sprintf("b1 /%d", i) {
			t.Fatalf("request %d: %s %q", i, r.status, r.body)
		}
		if got, want := closes(r), i == 3; got != want {
			t.Fatalf("request %d: Connection %q, want close=%v", i, r.headers["connection"], want)
		}
		if i < 3 && len(r.headers["connection"]) != 0 {
			t.Errorf("request %d: Connection %q on a keep-alive response", i, r.headers["connection"])
		}
	}
	expectEOF(t, br)
	if ci := p.info(); ci.Requests != 3 || ci.Reason != sluicev1.CloseReason_CLOSE_REASON_MAX_REQUESTS {
		t.Errorf("ConnInfo requests=%d reason=%v, want 3 MAX_REQUESTS", ci.Requests, ci.Reason)
	}

	// A keep-alive client just reconnects: 7 requests take 3 connections.
	client := keepAliveClient()
	for i := 0; i < 7; i++ {
		resp, err := client.Get("http://" + p.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if n := p.ln.accepted.Load(); n != 1+3 {
		t.Errorf("proxy accepted %d connections, want 4", n)
	}
}

// With the limit reached by pipelined requests, the last response allowed
// still arrives in full and the rest are not answered.
func TestMaxRequestsPerConnectionPipelined(t *testing.T) {
	b := startBackend(t, "b1", nameHandler("b1"))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}, MaxRequestsPerConnection: 2})
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := readResponse(t, br, "GET"); r.body != "b1 /1" || closes(r) {
		t.Fatalf("first: %q close=%v", r.body, closes(r))
	}
	if r := readResponse(t, br, "GET"); r.body != "b1 /2" || !closes(r) {
		t.Fatalf("second: %q close=%v", r.body, closes(r))
	}
	expectEOF(t, br)
}

// An HTTP/1.0 keep-alive client gets keep-alive until the limit, then a
// response without it.
func TestConnectionLimitsHTTP10(t *testing.T) {
	b := startBackend(t, "b1", sleepNameHandler("b1"))
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"requests", Config{MaxRequestsPerConnection: 2}},
		// An age long enough for any machine to answer the first request
		// within it.
		{"age", Config{MaxConnectionAge: 2 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Director = &rrDirector{eps: []*upstream.Endpoint{b.ep}}
			p := startProxy(t, &cfg)
			conn := p.dial()
			br := bufio.NewReader(conn)
			var answered time.Time // of the first response: the proxy accepted before
			for i := 1; i <= 2; i++ {
				sleep := time.Duration(0)
				if i == 2 && cfg.MaxConnectionAge > 0 {
					// Answered past the age: the endpoint gets the request
					// after it was sent, and the proxy's clock started
					// before the first answer.
					sleep = max(time.Until(answered.Add(cfg.MaxConnectionAge)), 0)
				}
				fmt.Fprintf(conn, "GET /%d?sleep=%s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", i, sleep)
				r := readResponse(t, br, "GET")
				if i == 1 {
					answered = time.Now()
				}
				if r.code != 200 || r.body != fmt.Sprintf("b1 /%d", i) || r.header("Content-Length") == "" {
					t.Fatalf("request %d: %s %q", i, r.status, r.body)
				}
				conns := r.headers["connection"]
				if i == 1 && (len(conns) != 1 || conns[0] != "keep-alive") {
					t.Fatalf("request 1: Connection %q, want keep-alive", conns)
				}
				if i == 2 && (!closes(r) || strings.Contains(strings.ToLower(strings.Join(conns, ",")), "keep-alive")) {
					t.Fatalf("request 2: Connection %q, want close and no keep-alive", conns)
				}
			}
			expectEOF(t, br)
		})
	}
}

// DESIGN problem 3: with MaxConnectionAge, a client requesting every 100ms
// gets Connection: close on the first response once the connection has
// reached the age, and the connection then closes.
//
// A connection idle when it reaches the age closes quietly instead (see
// TestMaxConnectionAgeClosesIdleConnection), so which of the two happens
// at the age depends on whether a request is in flight then. To make that
// certain, the request sent at 250ms is answered only once the connection
// is past its age. The age is long enough for any machine to send that
// request, and answer those before it, within it.
func TestMaxConnectionAge(t *testing.T) {
	const age = 2 * time.Second
	b := startBackend(t, "b1", sleepNameHandler("b1"))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}, MaxConnectionAge: age})
	start := time.Now() // before accept: the proxy's age is at most the time since
	conn := p.dial()
	br := bufio.NewReader(conn)
	var answered time.Time // of the first response: the proxy's age is at least the time since
	for i, at := range []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 250 * time.Millisecond} {
		time.Sleep(time.Until(start.Add(at)))
		sleep := time.Duration(0)
		if i == 3 {
			// The endpoint gets the request after this, and sleeps from
			// then.
			sleep = max(time.Until(answered.Add(age)), 0)
		}
		fmt.Fprintf(conn, "GET /%d?sleep=%s HTTP/1.1\r\nHost: x\r\n\r\n", i, sleep)
		r := readResponse(t, br, "GET")
		got := time.Since(start)
		if i == 0 {
			answered = time.Now()
		}
		if r.code != 200 || r.body != fmt.Sprintf("b1 /%d", i) {
			t.Fatalf("request %d: %s %q", i, r.status, r.body)
		}
		if i < 3 {
			if got >= age {
				t.Fatalf("request %d answered at %v: the test ran too slowly", i, got)
			}
			if len(r.headers["connection"]) != 0 {
				t.Fatalf("request %d answered at %v with Connection %q", i, got, r.headers["connection"])
			}
			continue
		}
		if !closes(r) {
			t.Fatalf("the first response after the age (at %v) has Connection %q, want close", got, r.headers["connection"])
		}
	}
	expectEOF(t, br)
	if ci := p.info(); ci.Requests != 4 || ci.Reason != sluicev1.CloseReason_CLOSE_REASON_MAX_AGE {
		t.Errorf("ConnInfo requests=%d reason=%v, want 4 MAX_AGE", ci.Requests, ci.Reason)
	}
}

// sleepNameHandler is nameHandler that first sleeps for the request's
// ?sleep= duration.
func sleepNameHandler(name string) http.Handler {
	h := nameHandler(name)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d, _ := time.ParseDuration(r.URL.Query().Get("sleep")); d > 0 {
			time.Sleep(d)
		}
		h.ServeHTTP(w, r)
	})
}

// A keep-alive connection idle when it reaches its age closes quietly then,
// well before IdleTimeout.
func TestMaxConnectionAgeClosesIdleConnection(t *testing.T) {
	const age = 300 * time.Millisecond
	b := startBackend(t, "b1", nameHandler("b1"))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}, MaxConnectionAge: age, IdleTimeout: 5 * time.Second})
	start := time.Now()
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := readResponse(t, br, "GET"); r.code != 200 || closes(r) {
		t.Fatalf("got %s close=%v", r.status, closes(r))
	}
	expectEOF(t, br)
	if d := time.Since(start); d < age-10*time.Millisecond || d > 2*time.Second {
		t.Errorf("idle connection closed after %v, want about %v", d, age)
	}
	if ci := p.info(); ci.Requests != 1 || ci.Reason != sluicev1.CloseReason_CLOSE_REASON_MAX_AGE {
		t.Errorf("ConnInfo requests=%d reason=%v, want 1 MAX_AGE", ci.Requests, ci.Reason)
	}
}

// A new connection is not closed for its age before its first request: it
// is served, with Connection: close.
func TestMaxConnectionAgeServesFirstRequest(t *testing.T) {
	b := startBackend(t, "b1", nameHandler("b1"))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}, MaxConnectionAge: 50 * time.Millisecond})
	conn := p.dial()
	br := bufio.NewReader(conn)
	time.Sleep(150 * time.Millisecond)
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := readResponse(t, br, "GET"); r.code != 200 || !closes(r) {
		t.Fatalf("got %s close=%v", r.status, closes(r))
	}
	expectEOF(t, br)
}

// The proxy's own answers obey the limits too.
func TestConnectionLimitsOnProxyAnswers(t *testing.T) {
	p := startProxy(t, &Config{Director: failDirector{}, MaxRequestsPerConnection: 2})
	conn := p.dial()
	br := bufio.NewReader(conn)
	for i := 1; i <= 2; i++ {
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if r := readResponse(t, br, "GET"); r.code != 503 || closes(r) != (i == 2) {
			t.Fatalf("request %d: %s close=%v", i, r.status, closes(r))
		}
	}
	expectEOF(t, br)
}

// SetConfig applies the limits to connections already open, from their
// next request.
func TestConnectionLimitsFollowSetConfig(t *testing.T) {
	b := startBackend(t, "b1", nameHandler("b1"))
	cfg := &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}}
	p := startProxy(t, cfg)
	conn := p.dial()
	br := bufio.NewReader(conn)
	for i := 1; i <= 3; i++ {
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if r := readResponse(t, br, "GET"); r.code != 200 || closes(r) {
			t.Fatalf("request %d: %s close=%v", i, r.status, closes(r))
		}
	}
	limited := *cfg
	limited.MaxRequestsPerConnection = 2 // already past it
	p.srv.SetConfig(&limited)
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := readResponse(t, br, "GET"); r.code != 200 || !closes(r) {
		t.Fatalf("after SetConfig: %s close=%v", r.status, closes(r))
	}
	expectEOF(t, br)
}

// refused sends req on a new connection and checks that the proxy answers
// it with status, says it closes, and closes.
func refused(t *testing.T, p *proxy, req string, status int) {
	t.Helper()
	conn := p.dial()
	br := bufio.NewReader(conn)
	go io.WriteString(conn, req)
	r := readResponse(t, br, "GET")
	if r.code != status || !closes(r) {
		t.Errorf("got %s (close=%v), want %d and close", r.status, closes(r), status)
	}
	expectEOF(t, br)
}

// The head limits answer 431 (head bytes, field count) and 414 (target),
// close the connection, and nothing reaches the endpoint; what is within
// them passes, including more fields than the engine holds without
// allocating.
func TestHeadLimits(t *testing.T) {
	b := startBackend(t, "b1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d fields", len(r.Header.Values("X-A")))
	}))
	ep := upstream.New("web", "b1", b.ln.Addr().String())
	p := startProxy(t, &Config{
		Director:       &rrDirector{eps: []*upstream.Endpoint{ep}},
		Forwarded:      ForwardNone,
		MaxHeaderBytes: 2048,
		MaxHeaderCount: 150,
		MaxURILength:   100,
	})
	fields := func(n int) string { return strings.Repeat("X-A: 1\r\n", n) }
	uri := "/" + strings.Repeat("u", 99)

	refused(t, p, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("b", 2048)+"\r\n\r\n", 431)
	refused(t, p, "GET / HTTP/1.1\r\nHost: x\r\n"+fields(150)+"\r\n", 431)
	refused(t, p, "GET "+uri+"u HTTP/1.1\r\nHost: x\r\n\r\n", 414)
	// A target longer than the whole head may be is told apart too.
	refused(t, p, "GET /"+strings.Repeat("u", 4096), 414)
	if n := b.ln.accepted.Load(); n != 0 {
		t.Fatalf("refused requests reached the endpoint (%d connections)", n)
	}

	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET "+uri+" HTTP/1.1\r\nHost: x\r\n"+fields(149)+"\r\n")
	if r := readResponse(t, br, "GET"); r.code != 200 || r.body != "149 fields" {
		t.Fatalf("a head within the limits: %s %q", r.status, r.body)
	}
	// Bigger than the default field count but within the configured one,
	// on the same connection (the exchange's grown field table is reused
	// within the request only).
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n"+fields(120)+"\r\nGET / HTTP/1.1\r\nHost: x\r\nX-B: 1\r\n\r\n")
	for _, want := range []string{"120 fields", "0 fields"} {
		if r := readResponse(t, br, "GET"); r.code != 200 || r.body != want {
			t.Fatalf("got %s %q, want %q", r.status, r.body, want)
		}
	}
}

// The defaults: 100 fields, 8 KiB targets.
func TestHeadLimitDefaults(t *testing.T) {
	p := startProxy(t, &Config{Director: failDirector{}})
	refused(t, p, "GET / HTTP/1.1\r\nHost: x\r\n"+strings.Repeat("X-A: 1\r\n", 100)+"\r\n", 431)
	refused(t, p, "GET /"+strings.Repeat("u", 8192)+" HTTP/1.1\r\nHost: x\r\n\r\n", 414)
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET /"+strings.Repeat("u", 8191)+" HTTP/1.1\r\nHost: x\r\n"+strings.Repeat("X-A: 1\r\n", 99)+"\r\n")
	if r := readResponse(t, br, "GET"); r.code != 503 {
		t.Fatalf("within the defaults: %s", r.status)
	}
}

// MaxRequestBodyBytes: a longer Content-Length is refused with 413 before
// anything reaches an endpoint; a chunked body passing it is cut before
// the bytes past it go out, and answered 413.
func TestMaxRequestBodyBytes(t *testing.T) {
	bodies := make(chan string, 4) // bodies read in full
	cut := make(chan string, 4)    // what came of a body cut short
	var accepted, heads atomic.Int64
	addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		accepted.Add(1)
		for {
			head := readRequestHead(br)
			if head == "" {
				return
			}
			heads.Add(1)
			body, err := readBody(head, br)
			if err != nil {
				cut <- string(body)
				return
			}
			bodies <- string(body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	ep := upstream.New("web", "b1", addr)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}, MaxRequestBodyBytes: 10})

	refused(t, p, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n0123456789a", 413)
	refused(t, p, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n6\r\n56789a\r\n0\r\n\r\n", 413)
	if n := accepted.Load(); n != 0 {
		t.Fatalf("refused bodies reached the endpoint (%d connections)", n)
	}
	if ci := p.info(); ci.Requests != 1 {
		t.Errorf("a refused body is a request of its connection: Requests %d", ci.Requests)
	}

	// At the limit, both framings pass.
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789")
	if r := readResponse(t, br, "POST"); r.code != 200 || <-bodies != "0123456789" {
		t.Fatalf("10 bytes: %s", r.status)
	}
	io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n")
	if r := readResponse(t, br, "POST"); r.code != 200 || <-bodies != "01234"+"56789" {
		t.Fatalf("10 chunked bytes: %s", r.status)
	}

	// A chunked body that grows past the limit while it streams: the
	// endpoint got the bytes within the limit, then its connection closed;
	// the client gets 413 and its connection closes.
	conn = p.dial()
	br = bufio.NewReader(conn)
	io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n01234567\r\n")
	waitFor(t, func() bool { return heads.Load() == 3 })
	io.WriteString(conn, "3\r\n89a\r\n0\r\n\r\n")
	r := readResponse(t, br, "POST")
	if r.code != 413 || !closes(r) {
		t.Fatalf("growing chunked body: %s close=%v", r.status, closes(r))
	}
	expectEOF(t, br)
	select {
	case got := <-cut:
		if got != "01234567" {
			t.Errorf("the endpoint got %q of the body before the cut, want the 8 bytes within the limit", got)
		}
	case got := <-bodies:
		t.Errorf("the endpoint got a whole body %q", got)
	case <-time.After(defaultTestTimeout):
		t.Error("the endpoint connection was not cut")
	}
}
