package httpproxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
)

func parseTestRequest(t testing.TB, head string) *Request {
	t.Helper()
	var r Request
	b := []byte(head)
	end, _ := findHeadEnd(b, 0)
	if end != len(b) {
		t.Fatalf("not one head: %q", head)
	}
	if err := r.parse(b); err != nil {
		t.Fatalf("parse %q: %v", head, err)
	}
	return &r
}

// cookieHead is a request head with the given Cookie field lines.
func cookieHead(cookies ...string) string {
	var sb strings.Builder
	sb.WriteString("GET / HTTP/1.1\r\nHost: a\r\n")
	for _, c := range cookies {
		sb.WriteString(c)
		sb.WriteString("\r\n")
	}
	sb.WriteString("X-After: 1\r\n\r\n")
	return sb.String()
}

func TestRequestCookie(t *testing.T) {
	const absent = "<nil>"
	for _, tc := range []struct {
		fields []string
		name   string
		want   string
	}{
		{[]string{"Cookie: a=1; b=2"}, "a", "1"},
		{[]string{"Cookie: a=1; b=2"}, "b", "2"},
		{[]string{"Cookie: a=1; b=2"}, "c", absent},
		{[]string{"Cookie: a=1;b=2"}, "b", "2"},                        // no space after ';'
		{[]string{"Cookie: a=1 ;  b=2 ; "}, "b", "2"},                  // extra whitespace, trailing ';'
		{[]string{"Cookie: ;; a=1;;b=2;"}, "b", "2"},                   // empty pairs
		{[]string{"Cookie: a=1", "Cookie: b=2"}, "b", "2"},             // two fields
		{[]string{"cookie: a=1", "COOKIE: b=2"}, "b", "2"},             // field name in any case
		{[]string{"Cookie: a=1; a=2", "Cookie: a=3"}, "a", "1"},        // first wins
		{[]string{"Cookie: SERVERID=s1"}, "serverid", absent},          // names are case-sensitive
		{[]string{"Cookie: SERVERIDX=y; SERVERID=x"}, "SERVERID", "x"}, // not a prefix match
		{[]string{"Cookie: XSERVERID=y; SERVERID=x"}, "SERVERID", "x"},
		{[]string{"Cookie: SERVERID=x"}, "SERVERI", absent},
		{[]string{`Cookie: a="q v"; b=2`}, "a", `"q v"`}, // quoted: as sent
		{[]string{"Cookie: a=b=c"}, "a", "b=c"},
		{[]string{"Cookie: a = 1 ; b=2"}, "a", "1"}, // whitespace around '='
		{[]string{"Cookie: a=; b=2"}, "a", ""},      // present, empty
		{[]string{"Cookie: junk; b=2"}, "junk", ""}, // no '=': a name without value
		{[]string{"Cookie: junk; b=2"}, "b", "2"},
		{[]string{"Cookie: =v; b=2"}, "", absent}, // the empty name matches nothing
		{[]string{"Cookie:"}, "a", absent},
		{[]string{"X-Cookie: a=1", "Set-Cookie: a=2"}, "a", absent}, // only Cookie fields
		{nil, "a", absent},
	} {
		r := parseTestRequest(t, cookieHead(tc.fields...))
		v := r.Cookie(tc.name)
		got := string(v)
		if v == nil {
			got = absent
		}
		if got != tc.want {
			t.Errorf("%q Cookie(%q) = %q, want %q", tc.fields, tc.name, got, tc.want)
		}
	}
}

// forwardedCookies returns the Cookie field lines of the head forwarded for
// a request with the given fields after RemoveCookie of each of remove.
func forwardedCookies(t *testing.T, fields []string, remove ...string) []string {
	t.Helper()
	r := parseTestRequest(t, cookieHead(fields...))
	for _, n := range remove {
		r.RemoveCookie(n)
	}
	out := appendRequestHead(nil, r, "b:80")
	if !strings.HasSuffix(string(out), "X-After: 1\r\n\r\n") || !strings.HasPrefix(string(out), "GET / HTTP/1.1\r\nHost: a\r\n") {
		t.Fatalf("forwarded head %q", out)
	}
	var got []string
	for _, l := range strings.Split(string(out), "\r\n") {
		if strings.HasPrefix(strings.ToLower(l), "cookie:") {
			got = append(got, l)
		}
	}
	return got
}

func TestRemoveCookie(t *testing.T) {
	for _, tc := range []struct {
		fields []string
		remove []string
		want   []string
	}{
		{[]string{"Cookie: SERVERID=s1; a=1; b=2"}, []string{"SERVERID"}, []string{"Cookie: a=1; b=2"}},         // first
		{[]string{"Cookie: a=1; SERVERID=s1; b=2"}, []string{"SERVERID"}, []string{"Cookie: a=1; b=2"}},         // middle
		{[]string{"Cookie: a=1; b=2; SERVERID=s1"}, []string{"SERVERID"}, []string{"Cookie: a=1; b=2"}},         // last
		{[]string{"Cookie: SERVERID=s1"}, []string{"SERVERID"}, nil},                                            // only: field dropped
		{[]string{"Cookie: a=1;SERVERID=s1;b=\"x y\""}, []string{"SERVERID"}, []string{`Cookie: a=1; b="x y"`}}, // no spaces
		{[]string{"Cookie: SERVERIDX=y; serverid=z; SERVERID=x"}, []string{"SERVERID"}, []string{"Cookie: SERVERIDX=y; serverid=z"}},
		{[]string{"Cookie: SERVERID=1; a=1; SERVERID=2"}, []string{"SERVERID"}, []string{"Cookie: a=1"}}, // every pair of the name
		{[]string{"Cookie: a=1; SERVERID=s1", "Cookie: b=2"}, []string{"SERVERID"}, []string{"Cookie: a=1", "Cookie: b=2"}},
		{[]string{"Cookie: a=1", "cookie: SERVERID=s1"}, []string{"SERVERID"}, []string{"Cookie: a=1"}}, // second field dropped
		{[]string{"Cookie: SERVERID=s1", "Cookie: b=2"}, []string{"SERVERID"}, []string{"Cookie: b=2"}}, // first field dropped
		{[]string{"Cookie: a=1 ;  b=2"}, []string{"SERVERID"}, []string{"Cookie: a=1 ;  b=2"}},          // untouched field verbatim
		{[]string{"Cookie: a=1; b=2; c=3"}, []string{"a", "c"}, []string{"Cookie: b=2"}},
		{[]string{"Cookie: ; SERVERID=s1 ;; "}, []string{"SERVERID"}, nil},
		{[]string{"Cookie: a=1; b=2"}, []string{""}, []string{"Cookie: a=1; b=2"}},
		{[]string{"Cookie: a=1; b=2"}, nil, []string{"Cookie: a=1; b=2"}},
	} {
		got := forwardedCookies(t, tc.fields, tc.remove...)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q without %q: forwarded %q, want %q", tc.fields, tc.remove, got, tc.want)
		}
	}
}

func TestAddResponseFieldValidation(t *testing.T) {
	var r Request
	r.AddResponseField("Set-Cookie", []byte("SERVERID=s1; path=/"))
	r.AddResponseField("Cache-Control", []byte(` no-cache="set-cookie" `))
	for _, bad := range []struct{ name, value string }{
		{"", "x"},
		{"Bad Name", "x"},
		{"X-Inject", "a\r\nX-Evil: 1"},
		{"X-Nul", "a\x00"},
		{"Content-Length", "0"},
		{"transfer-encoding", "chunked"},
		{"Connection", "close"},
		{"Keep-Alive", "1"},
	} {
		r.AddResponseField(bad.name, []byte(bad.value))
	}
	want := "Set-Cookie: SERVERID=s1; path=/\r\nCache-Control: no-cache=\"set-cookie\"\r\n"
	if string(r.addResp) != want {
		t.Errorf("added %q, want %q", r.addResp, want)
	}
}

func TestSetCookieName(t *testing.T) {
	for v, want := range map[string]string{
		"SERVERID=x; path=/":  "SERVERID",
		" SERVERID = x":       "SERVERID",
		"SERVERID":            "",
		"SERVERID; a=b":       "",
		"=x":                  "",
		"a=b=c; Expires=x":    "a",
		"SERVERIDX=y; path=/": "SERVERIDX",
	} {
		if got := string(setCookieName([]byte(v))); got != want {
			t.Errorf("setCookieName(%q) = %q, want %q", v, got, want)
		}
	}
}

// persistDirector does what HAProxy's "cookie SERVERID insert indirect
// nocache" does for requests whose path starts with /persist, and records
// the SERVERID each request carried.
type persistDirector struct {
	ep   *upstream.Endpoint
	fail bool // answer ErrNoEndpoint after asking for the changes

	mu   sync.Mutex
	seen []string
}

func (d *persistDirector) Pick(r *Request) (*upstream.Endpoint, time.Duration, error) {
	d.mu.Lock()
	d.seen = append(d.seen, string(r.Cookie("SERVERID")))
	d.mu.Unlock()
	if strings.HasPrefix(string(r.Path()), "/persist") {
		r.RemoveCookie("SERVERID")
		r.RemoveResponseCookie("SERVERID")
		r.AddResponseField("Set-Cookie", []byte("SERVERID=b1; path=/"))
		r.AddResponseField("Cache-Control", []byte(`no-cache="set-cookie"`))
	}
	if d.fail {
		return nil, 0, ErrNoEndpoint
	}
	d.ep.Acquire()
	return d.ep, time.Second, nil
}

func headerLines(head, name string) []string {
	var got []string
	for _, l := range strings.Split(head, "\r\n") {
		if n, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(n, name) {
			got = append(got, strings.TrimSpace(v))
		}
	}
	return got
}

func TestCookiePersistenceThroughTheProxy(t *testing.T) {
	addr, heads := captureBackend(t, "HTTP/1.1 200 OK\r\nSet-Cookie: SERVERID=x; path=/\r\nSet-Cookie: SERVERIDX=y\r\n"+
		"set-cookie: session=z; HttpOnly\r\nContent-Length: 2\r\n\r\nok")
	d := &persistDirector{ep: upstream.New("web", "b1", addr)}
	p := startProxy(t, &Config{Director: d})
	conn := p.dial()
	br := bufio.NewReader(conn)

	// Twice on one keep-alive connection: with the persistence changes,
	// then a request that asks for none must get none of them.
	for i, path := range []string{"/persist", "/plain", "/persist", "/plain"} {
		io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: x\r\nCookie: a=1; SERVERID=old; b=2\r\nCookie: c=3\r\n\r\n")
		head := <-heads
		r := readResponse(t, br, "GET")
		if r.code != 200 || r.body != "ok" {
			t.Fatalf("request %d: %s %q", i, r.status, r.body)
		}
		cookies := headerLines(head, "cookie")
		setCookies := r.headers["set-cookie"]
		cacheControl := r.headers["cache-control"]
		if path == "/persist" {
			if want := []string{"a=1; b=2", "c=3"}; !slices.Equal(cookies, want) {
				t.Errorf("request %d: endpoint got Cookie %q, want %q", i, cookies, want)
			}
			if want := []string{"SERVERIDX=y", "session=z; HttpOnly", "SERVERID=b1; path=/"}; !slices.Equal(setCookies, want) {
				t.Errorf("request %d: client got Set-Cookie %q, want %q", i, setCookies, want)
			}
			if want := []string{`no-cache="set-cookie"`}; !slices.Equal(cacheControl, want) {
				t.Errorf("request %d: client got Cache-Control %q, want %q", i, cacheControl, want)
			}
		} else {
			if want := []string{"a=1; SERVERID=old; b=2", "c=3"}; !slices.Equal(cookies, want) {
				t.Errorf("request %d: endpoint got Cookie %q, want %q (state of the previous request leaked)", i, cookies, want)
			}
			if want := []string{"SERVERID=x; path=/", "SERVERIDX=y", "session=z; HttpOnly"}; !slices.Equal(setCookies, want) {
				t.Errorf("request %d: client got Set-Cookie %q, want %q (state of the previous request leaked)", i, setCookies, want)
			}
			if cacheControl != nil {
				t.Errorf("request %d: client got Cache-Control %q (state of the previous request leaked)", i, cacheControl)
			}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if want := []string{"old", "old", "old", "old"}; !slices.Equal(d.seen, want) {
		t.Errorf("Pick saw SERVERID %q, want %q", d.seen, want)
	}
}

// The whole head of a response with added fields goes out in one write,
// with the body that came with it: the client gets it in one read.
func TestResponseHeadWithAddedFieldsIsOneWrite(t *testing.T) {
	addr, _ := captureBackend(t, "HTTP/1.1 200 OK\r\nSet-Cookie: SERVERID=x\r\nContent-Length: 2\r\n\r\nok")
	p := startProxy(t, &Config{Director: &persistDirector{ep: upstream.New("web", "b1", addr)}})
	conn := p.dial()
	io.WriteString(conn, "GET /persist HTTP/1.1\r\nHost: x\r\n\r\n")
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	want := "HTTP/1.1 200 OK\r\nSet-Cookie: SERVERID=b1; path=/\r\nCache-Control: no-cache=\"set-cookie\"\r\nContent-Length: 2\r\n\r\nok"
	if string(buf[:n]) != want {
		t.Errorf("first read %q, want %q", buf[:n], want)
	}
}

func TestAddedFieldsNotOnProxyAnswers(t *testing.T) {
	t.Run("503", func(t *testing.T) {
		p := startProxy(t, &Config{Director: &persistDirector{fail: true}})
		conn := p.dial()
		br := bufio.NewReader(conn)
		for range 2 {
			io.WriteString(conn, "GET /persist HTTP/1.1\r\nHost: x\r\nCookie: SERVERID=s1\r\n\r\n")
			r := readResponse(t, br, "GET")
			if r.code != 503 || r.headers["set-cookie"] != nil || r.header("Cache-Control") != "no-cache" {
				t.Fatalf("got %s %v", r.status, r.headers)
			}
		}
	})
	t.Run("502", func(t *testing.T) {
		dead := loopback.FreeAddr(t)
		p := startProxy(t, &Config{Director: &persistDirector{ep: upstream.New("web", "dead", dead)}})
		conn := p.dial()
		br := bufio.NewReader(conn)
		io.WriteString(conn, "GET /persist HTTP/1.1\r\nHost: x\r\n\r\n")
		r := readResponse(t, br, "GET")
		if r.code != 502 || r.headers["set-cookie"] != nil || r.header("Cache-Control") != "no-cache" {
			t.Fatalf("got %s %v", r.status, r.headers)
		}
	})
	t.Run("interim 100", func(t *testing.T) {
		addr, _ := captureBackend(t, "HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"+
			"HTTP/1.1 200 OK\r\nSet-Cookie: SERVERID=x\r\nContent-Length: 2\r\n\r\nok")
		p := startProxy(t, &Config{Director: &persistDirector{ep: upstream.New("web", "b1", addr)}})
		conn := p.dial()
		br := bufio.NewReader(conn)
		io.WriteString(conn, "GET /persist HTTP/1.1\r\nHost: x\r\n\r\n")
		if head := readRequestHead(br); head != "HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n" {
			t.Fatalf("interim head %q", head)
		}
		r := readResponse(t, br, "GET")
		if r.code != 200 || !slices.Equal(r.headers["set-cookie"], []string{"SERVERID=b1; path=/"}) || len(r.headers["cache-control"]) != 1 {
			t.Fatalf("final response %s %v", r.status, r.headers)
		}
	})
}

// repickDirector asks for changes and retires its endpoint on the first
// pick, as an apply racing the request would; the next configuration's
// director asks for other changes, which are the only ones applied.
type repickDirector struct {
	ep     *upstream.Endpoint
	retire func()
}

func (d repickDirector) Pick(r *Request) (*upstream.Endpoint, time.Duration, error) {
	r.RemoveCookie("a")
	r.RemoveResponseCookie("a")
	r.AddResponseField("X-Pick", []byte("1"))
	d.ep.Acquire()
	d.retire()
	return d.ep, time.Second, nil
}

type secondPickDirector struct{ ep *upstream.Endpoint }

func (d secondPickDirector) Pick(r *Request) (*upstream.Endpoint, time.Duration, error) {
	r.RemoveCookie("b")
	r.RemoveResponseCookie("b")
	r.AddResponseField("X-Pick", []byte("2"))
	d.ep.Acquire()
	return d.ep, time.Second, nil
}

func TestRepickResetsWhatTheFirstPickAskedFor(t *testing.T) {
	gone := startBackend(t, "gone", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "gone") }))
	for _, tc := range []struct {
		name, req string
		host      bool // the forwarded Host is the live endpoint's address
		body      string
	}{
		{"GET", "GET / HTTP/1.1\r\nHost: x\r\nCookie: a=1; b=2; c=3\r\n\r\n", false, ""},
		{"POST with body", "POST / HTTP/1.1\r\nHost: x\r\nCookie: a=1; b=2; c=3\r\nContent-Length: 11\r\n\r\nhello world", false, "hello world"},
		{"chunked", "POST / HTTP/1.1\r\nHost: x\r\nCookie: a=1; b=2; c=3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false, "5\r\nhello\r\n0\r\n\r\n"},
		{"HTTP/1.0 without Host", "GET / HTTP/1.0\r\nCookie: a=1; b=2; c=3\r\n\r\n", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type got struct{ head, body string }
			gots := make(chan got, 1)
			liveAddr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
				head := readRequestHead(br)
				body := make([]byte, len(tc.body))
				io.ReadFull(br, body)
				gots <- got{head, string(body)}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 4\r\n\r\nlive")
			})
			live := upstream.New("web", "live", liveAddr)
			gone.ep = upstream.New("web", "gone", gone.ln.Addr().String())
			p := startProxy(t, &Config{})
			p.srv.SetConfig(&Config{Director: repickDirector{ep: gone.ep, retire: func() {
				gone.ep.Drain()
				p.srv.SetConfig(&Config{Director: secondPickDirector{ep: live}})
			}}})
			conn := p.dial()
			br := bufio.NewReader(conn)
			io.WriteString(conn, tc.req)
			g := <-gots
			r := readResponse(t, br, "GET")
			if r.code != 200 || r.body != "live" {
				t.Fatalf("got %s %q", r.status, r.body)
			}
			if c := headerLines(g.head, "cookie"); !slices.Equal(c, []string{"a=1; c=3"}) {
				t.Errorf("endpoint got Cookie %q in %q, want only b removed", c, g.head)
			}
			if g.body != tc.body {
				t.Errorf("endpoint got body %q, want %q", g.body, tc.body)
			}
			if h := headerLines(g.head, "host"); tc.host && !slices.Equal(h, []string{liveAddr}) {
				t.Errorf("endpoint got Host %q, want %q", h, liveAddr)
			}
			if !slices.Equal(r.headers["set-cookie"], []string{"a=1"}) || !slices.Equal(r.headers["x-pick"], []string{"2"}) {
				t.Errorf("client got %v", r.headers)
			}
			if gone.ep.Inflight() != 0 || live.Inflight() != 0 {
				t.Errorf("in-flight counts %d/%d", gone.ep.Inflight(), live.Inflight())
			}
		})
	}
}

// What a persistence Director does costs no allocation once the buffers of
// the exchange have grown.
func TestCookiePersistenceDoesNotAllocate(t *testing.T) {
	reqHead := []byte("GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1; SERVERID=b1; b=2\r\nCookie: c=3\r\n\r\n")
	respHead := []byte("HTTP/1.1 200 OK\r\nSet-Cookie: SERVERID=x\r\nSet-Cookie: s=1\r\nContent-Length: 2\r\n\r\n")
	x := exchangePool.New().(*exchange)
	d := &persistBenchDirector{ep: upstream.New("web", "b1", "10.0.0.1:80"), setCookie: []byte("SERVERID=b1; path=/")}
	out := make([]byte, 0, wbSize)
	var fwd, relayed []byte
	run := func() {
		if err := x.req.parse(reqHead); err != nil {
			t.Fatal(err)
		}
		ep, _, _ := d.Pick(&x.req)
		ep.Release()
		out = appendRequestHead(out[:0], &x.req, ep.Addr)
		fwd = append(fwd[:0], out...)
		if err := x.resp.parse(respHead, false); err != nil {
			t.Fatal(err)
		}
		dropSetCookies(&x.resp, &x.req.dropSetCookies)
		out = appendResponseHead(out[:0], &x.resp, &x.req, 1, true, outLength)
		relayed = append(relayed[:0], out...)
	}
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
	if want := "GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1; b=2\r\nCookie: c=3\r\n\r\n"; string(fwd) != want {
		t.Errorf("forwarded %q, want %q", fwd, want)
	}
	if want := "HTTP/1.1 200 OK\r\nSet-Cookie: s=1\r\nSet-Cookie: SERVERID=b1; path=/\r\nCache-Control: no-cache=\"set-cookie\"\r\nContent-Length: 2\r\n\r\n"; string(relayed) != want {
		t.Errorf("relayed %q, want %q", relayed, want)
	}
}
