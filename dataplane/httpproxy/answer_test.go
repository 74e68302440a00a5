package httpproxy

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
)

// mustAnswer(t)(NewResponse(...)) fails the test on an error.
func mustAnswer(t testing.TB) func(*Answer, error) *Answer {
	return func(a *Answer, err error) *Answer {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
}

func TestNewResponseRefuses(t *testing.T) {
	for _, r := range []Response{
		{Status: 199},
		{Status: 600},
		{Status: 204, Body: []byte("x")},
		{Status: 200, ContentType: "text/plain\r\nX: 1"},
		{Status: 200, Fields: []Field{{"Content-Type", "text/html"}}},
		{Status: 200, Fields: []Field{{"Content-Length", "3"}}},
		{Status: 200, Fields: []Field{{"X", "a\nb"}}},
		{Status: 302, Refusal: 302},
		{Status: 302, Refusal: 600},
	} {
		if _, err := NewResponse(r); err == nil {
			t.Errorf("NewResponse(%+v) accepted", r)
		}
	}
}

func TestNewRedirectRefuses(t *testing.T) {
	for _, r := range []Redirect{
		{},
		{Code: 302},
		{Scheme: "ftp"},
		{Scheme: "https", Code: 300},
		{Path: "/a", Prefix: "/b"},
		{Path: "a"},
		{Path: "/a?b"},
		{Host: "a b"},
		{Host: "a/b"},
		{Port: 70000},
	} {
		if _, err := NewRedirect(r); err == nil {
			t.Errorf("NewRedirect(%+v) accepted", r)
		}
	}
}

func TestRedirectLocation(t *testing.T) {
	for _, tc := range []struct {
		name string
		rd   Redirect
		head string
		want string
	}{
		{"http to https", Redirect{Scheme: "https"}, "GET /a/b?x=1&y HTTP/1.1\r\nHost: example.com\r\n\r\n", "https://example.com/a/b?x=1&y"},
		{"http to https drops the port", Redirect{Scheme: "https"}, "GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", "https://example.com/"},
		{"https with a port", Redirect{Scheme: "https", Port: 8443}, "GET /p HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", "https://example.com:8443/p"},
		{"https default port left out", Redirect{Scheme: "https", Port: 443}, "GET /p HTTP/1.1\r\nHost: example.com\r\n\r\n", "https://example.com/p"},
		{"same scheme keeps the port", Redirect{Path: "/new"}, "GET /old?q HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", "http://example.com:8080/new?q"},
		{"explicit default port of http", Redirect{Path: "/new", Port: 80}, "GET /old HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", "http://example.com/new"},
		{"host replaced, port not kept", Redirect{Host: "www.example.com"}, "GET /a?b HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", "http://www.example.com/a?b"},
		{"IPv6 host", Redirect{Host: "2001:db8::1", Scheme: "https"}, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "https://[2001:db8::1]/"},
		{"IPv4 host in brackets", Redirect{Host: "[192.0.2.1]"}, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "http://192.0.2.1/"},
		{"IPv6 request host", Redirect{Scheme: "https"}, "GET /x HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", "https://[::1]/x"},
		{"IPv6 request host keeps its port", Redirect{Path: "/y"}, "GET /x HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", "http://[::1]:8080/y"},
		{"prefix", Redirect{Prefix: "/v2/"}, "GET /users?id=3 HTTP/1.1\r\nHost: h\r\n\r\n", "http://h/v2/users?id=3"},
		{"prefix of the root", Redirect{Prefix: "/v2"}, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "http://h/v2/"},
		{"strip query", Redirect{Path: "/", StripQuery: true}, "GET /a?b=c HTTP/1.1\r\nHost: h\r\n\r\n", "http://h/"},
		{"absolute-form target", Redirect{Scheme: "https"}, "GET http://h:81/p?q HTTP/1.1\r\nHost: h:81\r\n\r\n", "https://h/p?q"},
		{"asterisk", Redirect{Scheme: "https"}, "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "https://h/"},
		{"HTTP/1.0 without Host", Redirect{Scheme: "https"}, "GET /a?b HTTP/1.0\r\n\r\n", "/a?b"},
		{"HTTP/1.0 without Host, no network-path reference", Redirect{Scheme: "https"}, "GET //evil.example/x HTTP/1.0\r\n\r\n", "/evil.example/x"},
		{"HTTP/1.0 without Host, new host", Redirect{Scheme: "https", Host: "h"}, "GET /a HTTP/1.0\r\n\r\n", "https://h/a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := mustAnswer(t)(NewRedirect(tc.rd))
			r := parseTestRequest(t, tc.head)
			if got := string(a.redir.appendLocation(nil, r, netip.AddrPort{})); got != tc.want {
				t.Errorf("Location %q, want %q", got, tc.want)
			}
		})
	}
}

// TestRedirectLocationWithoutHost: a relative Location would keep the
// client on http, or on its port, so a redirect that changes either names
// the address the client connected to when the request has no Host.
func TestRedirectLocationWithoutHost(t *testing.T) {
	local4 := netip.MustParseAddrPort("[::ffff:192.0.2.7]:80")
	local6 := netip.MustParseAddrPort("[2001:db8::7%eth0]:80")
	for _, tc := range []struct {
		name  string
		rd    Redirect
		head  string
		local netip.AddrPort // the address the client connected to
		want  string
	}{
		{"to https", Redirect{Scheme: "https"}, "GET /a?b HTTP/1.0\r\n\r\n", local4, "https://192.0.2.7/a?b"},
		{"to another port", Redirect{Port: 8080}, "GET /a HTTP/1.0\r\n\r\n", local4, "http://192.0.2.7:8080/a"},
		{"to https on IPv6", Redirect{Scheme: "https", Port: 8443}, "GET / HTTP/1.0\r\n\r\n", local6, "https://[2001:db8::7]:8443/"},
		{"same scheme and port stay relative", Redirect{Prefix: "/v2"}, "GET /a HTTP/1.0\r\n\r\n", local4, "/v2/a"},
		{"a Host wins", Redirect{Scheme: "https"}, "GET /a HTTP/1.0\r\nHost: h\r\n\r\n", local4, "https://h/a"},
		{"no address known stays relative", Redirect{Scheme: "https"}, "GET /a HTTP/1.0\r\n\r\n", netip.AddrPort{}, "/a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := mustAnswer(t)(NewRedirect(tc.rd))
			r := parseTestRequest(t, tc.head)
			if got := string(a.redir.appendLocation(nil, r, tc.local)); got != tc.want {
				t.Errorf("Location %q, want %q", got, tc.want)
			}
		})
	}
}

// answerDirector answers every request with a, or sends it to ep after
// a connect failure (first to dead, then answering).
type answerDirector struct {
	a    *Answer
	dead *upstream.Endpoint // picked first, when set
}

func (d *answerDirector) Pick(r *Request) (*upstream.Endpoint, time.Duration, error) {
	if d.dead != nil && !r.Failed(d.dead) {
		d.dead.Acquire()
		return d.dead, time.Second, nil
	}
	r.Respond(d.a)
	return nil, 0, nil
}

func TestResponseAnswers(t *testing.T) {
	deny := mustAnswer(t)(NewResponse(Response{Status: 403, Body: []byte("request denied\n"), Fields: []Field{{"Cache-Control", "no-cache"}}}))
	p := startProxy(t, &Config{Director: &answerDirector{a: deny}})
	conn := p.dial()
	br := bufio.NewReader(conn)

	// Kept open, HEAD without the body, a small body read in full.
	for _, tc := range []struct{ req, method, body string }{
		{"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "request denied\n"},
		{"HEAD /admin HTTP/1.1\r\nHost: x\r\n\r\n", "HEAD", ""},
		{"POST /admin HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", "POST", "request denied\n"},
	} {
		io.WriteString(conn, tc.req)
		r := readResponse(t, br, tc.method)
		if r.code != 403 || r.body != tc.body || r.header("Content-Type") != DefaultContentType ||
			r.header("Cache-Control") != "no-cache" || r.header("Content-Length") != "15" || r.header("Connection") != "" {
			t.Errorf("%s: got %s %v %q", tc.method, r.status, r.headers, r.body)
		}
	}
	// A body that did not come with the head is not waited for: the
	// connection closes after the answer.
	io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc")
	if r := readResponse(t, br, "POST"); r.code != 403 || r.header("Connection") != "close" {
		t.Errorf("unread body: got %s %v", r.status, r.headers)
	}
	expectEOF(t, br)

	// HTTP/1.0 keep-alive is answered in kind.
	conn = p.dial()
	br = bufio.NewReader(conn)
	io.WriteString(conn, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	if r := readResponse(t, br, "GET"); r.code != 403 || r.header("Connection") != "keep-alive" {
		t.Errorf("HTTP/1.0: got %s %v", r.status, r.headers)
	}
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if r := readResponse(t, br, "GET"); r.code != 403 || r.header("Connection") != "close" {
		t.Errorf("Connection: close: got %s %v", r.status, r.headers)
	}
	expectEOF(t, br)
}

// laterDirector answers every request with a, a request for /later with
// a Retry-After of d.
type laterDirector struct {
	a *Answer
	d time.Duration
}

func (d laterDirector) Pick(r *Request) (*upstream.Endpoint, time.Duration, error) {
	r.Respond(d.a)
	if string(r.Path()) == "/later" {
		r.RetryAfter(d.d)
	}
	return nil, 0, nil
}

// TestRetryAfterAnswers: a fixed answer given with RetryAfter carries
// Retry-After in whole seconds, rounded up, in every variant of the
// answer; the next request on the connection, answered without, has none.
func TestRetryAfterAnswers(t *testing.T) {
	slow := mustAnswer(t)(NewResponse(Response{Status: 429, Body: []byte("slow down\n")}))
	p := startProxy(t, &Config{Director: laterDirector{slow, 1500 * time.Millisecond}})
	conn := p.dial()
	br := bufio.NewReader(conn)
	for _, tc := range []struct{ req, method, retry, body, conn string }{
		{"GET /later HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "2", "slow down\n", ""},
		{"GET /now HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "", "slow down\n", ""},
		{"HEAD /later HTTP/1.1\r\nHost: x\r\n\r\n", "HEAD", "2", "", ""},
		{"GET /later HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET", "2", "slow down\n", "keep-alive"},
		{"GET /later HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "GET", "2", "slow down\n", "close"},
	} {
		io.WriteString(conn, tc.req)
		r := readResponse(t, br, tc.method)
		if r.code != 429 || r.header("Retry-After") != tc.retry || r.body != tc.body || r.header("Connection") != tc.conn || r.header("Content-Length") != "10" {
			t.Errorf("%q: got %s %v %q; want Retry-After %q", tc.req, r.status, r.headers, r.body, tc.retry)
		}
	}
	expectEOF(t, br)

	// What the other engine is handed, and how durations round.
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{time.Nanosecond, "1"}, {time.Second, "1"}, {time.Second + 1, "2"}, {0, ""}, {-time.Second, ""}, {1 << 62, "4294967295"}} {
		r := parseTestRequest(t, "GET /later HTTP/1.1\r\nHost: x\r\n\r\n")
		r.Respond(slow)
		r.RetryAfter(tc.d)
		want := "HTTP/1.1 429 Too Many Requests\r\n"
		if tc.want != "" {
			want += "Retry-After: " + tc.want + "\r\n"
		}
		want += "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 10\r\n\r\nslow down\n"
		if got := string(r.AppendAnswer(nil, slow)); got != want {
			t.Errorf("RetryAfter(%v): %q, want %q", tc.d, got, want)
		}
	}
}

func TestFixedResponseShapes(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Response
		want string
	}{
		{"no content", Response{Status: 204, Fields: []Field{{"X-A", "1"}}}, "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"},
		{"empty 200", Response{Status: 200}, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
		{"typed body", Response{Status: 503, ContentType: "text/html", Body: []byte("<p>x")}, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html\r\nContent-Length: 4\r\n\r\n<p>x"},
		{"unknown status", Response{Status: 599}, "HTTP/1.1 599 Unknown\r\nContent-Length: 0\r\n\r\n"},
	} {
		a := mustAnswer(t)(NewResponse(tc.r))
		if got := string(a.page.bytes(1, true, false)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestRedirectThroughTheProxy(t *testing.T) {
	a := mustAnswer(t)(NewRedirect(Redirect{Scheme: "https", Code: 301}))
	p := startProxy(t, &Config{Director: &answerDirector{a: a}})
	conn := p.dial()
	br := bufio.NewReader(conn)
	for range 2 {
		io.WriteString(conn, "GET /login?next=%2F HTTP/1.1\r\nHost: shop.example\r\n\r\n")
		r := readResponse(t, br, "GET")
		if r.code != 301 || r.header("Location") != "https://shop.example/login?next=%2F" || r.body != "" || r.header("Connection") != "" {
			t.Errorf("got %s %v %q", r.status, r.headers, r.body)
		}
	}
	// An HTTP/1.0 client that sends no Host is sent to the address it
	// connected to: a relative Location would keep it on http.
	io.WriteString(conn, "GET /login HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	r := readResponse(t, br, "GET")
	if want := "https://" + conn.RemoteAddr().(*net.TCPAddr).IP.String() + "/login"; r.code != 301 || r.header("Location") != want {
		t.Errorf("HTTP/1.0 without Host: %s, Location %q; want 301 to %q", r.status, r.header("Location"), want)
	}
}

// A Director asked again after a failed connect may answer instead.
func TestAnswerOnPickAgain(t *testing.T) {
	dead := upstream.New("web", "dead", loopback.FreeAddr(t))
	a := mustAnswer(t)(NewResponse(Response{Status: 503, Body: []byte("maintenance\n")}))
	p := startProxy(t, &Config{Director: &answerDirector{a: a, dead: dead}, Retries: 1})
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
	if r := readResponse(t, br, "POST"); r.code != 503 || r.body != "maintenance\n" || r.header("Connection") != "" {
		t.Errorf("got %s %v %q", r.status, r.headers, r.body)
	}
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := readResponse(t, br, "GET"); r.code != 503 {
		t.Errorf("next request on the connection: %s", r.status)
	}
	if dead.Inflight() != 0 {
		t.Errorf("in flight %d", dead.Inflight())
	}
}

func TestAnswersDoNotAllocate(t *testing.T) {
	fixed := mustAnswer(t)(NewResponse(Response{Status: 403, Body: []byte("no\n")}))
	redir := mustAnswer(t)(NewRedirect(Redirect{Scheme: "https"}))
	r := parseTestRequest(t, "GET /a?b HTTP/1.1\r\nHost: example.com:80\r\n\r\n")
	out := make([]byte, 0, wbSize)
	n := testing.AllocsPerRun(100, func() {
		r.resetDirectives()
		r.Respond(redir)
		out = r.answer.redir.appendResponse(out[:0], r, netip.AddrPort{}, 1, true)
		r.Respond(fixed)
		_ = r.answer.page.bytes(1, true, false)
	})
	if n != 0 {
		t.Errorf("%v allocations per answer", n)
	}
	if want := "HTTP/1.1 302 Found\r\nLocation: https://example.com/a?b\r\nContent-Length: 0\r\n\r\n"; string(out) != want {
		t.Errorf("redirect %q, want %q", out, want)
	}
}

// BenchmarkProxyRedirect is a keep-alive client answered http -> https by
// the proxy itself.
func BenchmarkProxyRedirect(b *testing.B) {
	a := mustAnswer(b)(NewRedirect(Redirect{Scheme: "https"}))
	p := startProxy(b, &Config{Director: &answerDirector{a: a}})
	req := []byte("GET /static/app.js?v=42 HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		b.Fatal(err)
	}
	c.Write(req)
	r := readResponse(b, bufio.NewReader(c), "GET")
	c.Close()
	if r.header("Location") != "https://www.example.com/static/app.js?v=42" {
		b.Fatalf("Location %q", r.header("Location"))
	}
	want := "HTTP/1.1 302 Found\r\nLocation: https://www.example.com/static/app.js?v=42\r\nContent-Length: 0\r\n\r\n"
	benchClientRequest(b, p.addr, req, len(want))
}
