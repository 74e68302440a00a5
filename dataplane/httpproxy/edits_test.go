package httpproxy

import (
	"bufio"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

func TestRequestURLAccessors(t *testing.T) {
	for _, tc := range []struct {
		target, path, query string
		noQuery             bool
	}{
		{target: "/", path: "/", noQuery: true},
		{target: "/a/b.css?v=1&x", path: "/a/b.css", query: "v=1&x"},
		{target: "/a?", path: "/a", query: ""},
		{target: "http://h:8080/x/y?q=1", path: "/x/y", query: "q=1"},
		{target: "http://h", path: "/", noQuery: true},
		{target: "http://h?q", path: "/", query: "q"},
		{target: "*", path: "*", noQuery: true},
	} {
		method := "GET"
		if tc.target == "*" {
			method = "OPTIONS"
		}
		r := parseTestRequest(t, method+" "+tc.target+" HTTP/1.1\r\nHost: h\r\n\r\n")
		if got := string(r.URLPath()); got != tc.path {
			t.Errorf("%s: URLPath %q, want %q", tc.target, got, tc.path)
		}
		q := r.RawQuery()
		if (q == nil) != tc.noQuery || string(q) != tc.query {
			t.Errorf("%s: RawQuery %q (nil %v), want %q", tc.target, q, q == nil, tc.query)
		}
	}
}

func TestRequestQuery(t *testing.T) {
	r := parseTestRequest(t, "GET /p?a=1&debug&b=&lang=en&lang=fr&ab=2&a=3 HTTP/1.1\r\nHost: h\r\n\r\n")
	for _, tc := range []struct {
		name, want string
		absent     bool
	}{
		{name: "a", want: "1"},
		{name: "debug", want: ""},
		{name: "b", want: ""},
		{name: "lang", want: "en"}, // the first
		{name: "ab", want: "2"},
		{name: "x", absent: true},
		{name: "A", absent: true}, // names are exact
		{name: "lan", absent: true},
	} {
		got := r.Query(tc.name)
		if (got == nil) != tc.absent || string(got) != tc.want {
			t.Errorf("Query(%q) = %q (nil %v), want %q", tc.name, got, got == nil, tc.want)
		}
	}
	if got := parseTestRequest(t, "GET / HTTP/1.1\r\nHost: h\r\n\r\n").Query("a"); got != nil {
		t.Errorf("Query without a query = %q", got)
	}
}

func TestRequestNextHeader(t *testing.T) {
	r := parseTestRequest(t, "GET / HTTP/1.1\r\nHost: h\r\nAccept: a\r\nX: 1\r\naccept: b\r\nConnection: x\r\nACCEPT: \r\n\r\n")
	var got []string
	for v, i := r.NextHeader("Accept", 0); i >= 0; v, i = r.NextHeader("Accept", i) {
		got = append(got, string(v))
	}
	if want := []string{"a", "b", ""}; !slices.Equal(got, want) {
		t.Errorf("Accept values %q, want %q", got, want)
	}
	if v, i := r.NextHeader("Missing", 0); v != nil || i != -1 {
		t.Errorf("NextHeader(Missing) = %q, %d", v, i)
	}
}

func TestNewHeaderEditsRefuses(t *testing.T) {
	for _, tc := range []struct {
		remove   []string
		set, add []Field
	}{
		{remove: []string{"Content-Length"}},
		{remove: []string{"bad name"}},
		{set: []Field{{"Host", "x"}}},
		{add: []Field{{"Connection", "close"}}},
		{add: []Field{{"X", "a\r\nInjected: 1"}}},
		{set: []Field{{"X", " padded"}}},
		{add: []Field{{"", "x"}}},
	} {
		if _, err := NewHeaderEdits(tc.remove, tc.set, tc.add); err == nil {
			t.Errorf("NewHeaderEdits(%v, %v, %v) accepted", tc.remove, tc.set, tc.add)
		}
	}
}

// editDirector applies request and response edits, in order, and sends to
// ep.
type editDirector struct {
	ep         *upstream.Endpoint
	req, resp  []*HeaderEdits
	addRespHdr bool
}

func (d *editDirector) Pick(r *Request) (*upstream.Endpoint, time.Duration, error) {
	for _, e := range d.req {
		r.EditRequest(e)
	}
	for _, e := range d.resp {
		r.EditResponse(e)
	}
	if d.addRespHdr {
		r.AddResponseField("Set-Cookie", []byte("SERVERID=b1"))
	}
	d.ep.Acquire()
	return d.ep, time.Second, nil
}

func mustEdits(t testing.TB, remove []string, set, add []Field) *HeaderEdits {
	t.Helper()
	e, err := NewHeaderEdits(remove, set, add)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestHeaderEditsThroughTheProxy(t *testing.T) {
	addr, heads := captureBackend(t, "HTTP/1.1 200 OK\r\nServer: app/1.2\r\nX-Powered-By: php\r\nCache-Control: public\r\n"+
		"Set-Cookie: s=1\r\nContent-Length: 2\r\n\r\nok")
	d := &editDirector{
		ep: upstream.New("web", "b1", addr),
		req: []*HeaderEdits{
			// Rule 1: remove X-Debug, set X-Env, add a Via.
			mustEdits(t, []string{"x-debug"}, []Field{{"X-Env", "prod"}}, []Field{{"Via", "1.1 sluice"}}),
			// Rule 2: Via again, and a later rule removes what rule 1 set.
			mustEdits(t, []string{"X-ENV"}, nil, []Field{{"Via", "2"}}),
		},
		resp: []*HeaderEdits{
			mustEdits(t, []string{"Server", "x-powered-by", "set-cookie"}, []Field{{"Cache-Control", "no-store"}}, nil),
		},
		addRespHdr: true,
	}
	p := startProxy(t, &Config{Director: d})
	conn := p.dial()
	br := bufio.NewReader(conn)
	// Twice on one connection: the edits of one request do not pile up.
	for i := range 2 {
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nX-Debug: 1\r\nx-debug: 2\r\nX-Env: dev\r\nVia: 1.0 client\r\nKeep-Alive: 5\r\nConnection: keep-alive\r\n\r\n")
		head := <-heads
		r := readResponse(t, br, "GET")
		if r.code != 200 || r.body != "ok" {
			t.Fatalf("request %d: %s %q", i, r.status, r.body)
		}
		if got := headerLines(head, "x-debug"); got != nil {
			t.Errorf("request %d: endpoint got X-Debug %q", i, got)
		}
		if got := headerLines(head, "x-env"); got != nil {
			t.Errorf("request %d: endpoint got X-Env %q, want it removed by the later edit", i, got)
		}
		if got, want := headerLines(head, "via"), []string{"1.0 client", "1.1 sluice", "2"}; !slices.Equal(got, want) {
			t.Errorf("request %d: endpoint got Via %q, want %q", i, got, want)
		}
		if got := headerLines(head, "keep-alive"); got != nil {
			t.Errorf("request %d: a hop-by-hop field was forwarded: %q", i, got)
		}
		if !strings.HasPrefix(head, "GET / HTTP/1.1\r\nHost: x\r\n") {
			t.Errorf("request %d: head %q", i, head)
		}
		for _, h := range []string{"server", "x-powered-by"} {
			if v := r.headers[h]; v != nil {
				t.Errorf("request %d: client got %s %q", i, h, v)
			}
		}
		if got := r.headers["cache-control"]; !slices.Equal(got, []string{"no-store"}) {
			t.Errorf("request %d: client got Cache-Control %q, want no-store", i, got)
		}
		// The endpoint's Set-Cookie is removed; the Director's own field,
		// added after the edits, stays.
		if got := r.headers["set-cookie"]; !slices.Equal(got, []string{"SERVERID=b1"}) {
			t.Errorf("request %d: client got Set-Cookie %q, want only the Director's", i, got)
		}
	}
}

// The proxy's own answers are not edited.
func TestResponseEditsNotOnProxyAnswers(t *testing.T) {
	gone := listen(t)
	addr := gone.Addr().String()
	gone.Close()
	d := &editDirector{ep: upstream.New("web", "gone", addr), resp: []*HeaderEdits{mustEdits(t, nil, nil, []Field{{"X-Edited", "1"}})}}
	p := startProxy(t, &Config{Director: d})
	conn := p.dial()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	r := readResponse(t, bufio.NewReader(conn), "GET")
	if r.code != 502 || r.header("X-Edited") != "" {
		t.Errorf("got %s with X-Edited %q, want a plain 502", r.status, r.header("X-Edited"))
	}
}

func TestHeaderEditsDoNotAllocate(t *testing.T) {
	reqHead := []byte("GET / HTTP/1.1\r\nHost: a\r\nX-Debug: 1\r\nAccept: */*\r\n\r\n")
	respHead := []byte("HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 2\r\n\r\n")
	x := exchangePool.New().(*exchange)
	reqEdits := []*HeaderEdits{
		mustEdits(t, []string{"X-Debug"}, []Field{{"X-Env", "prod"}}, []Field{{"Via", "sluice"}}),
		mustEdits(t, nil, nil, []Field{{"X-Rule", "2"}}),
	}
	respEdits := mustEdits(t, []string{"Server"}, nil, []Field{{"X-Frame-Options", "DENY"}})
	out := make([]byte, 0, wbSize)
	var fwd, relayed []byte
	run := func() {
		if err := x.req.parse(reqHead); err != nil {
			t.Fatal(err)
		}
		x.req.resetDirectives()
		for _, e := range reqEdits {
			x.req.EditRequest(e)
		}
		x.req.EditResponse(respEdits)
		out = appendRequestHead(out[:0], &x.req, "10.0.0.1:80")
		fwd = append(fwd[:0], out...)
		if err := x.resp.parse(respHead, false); err != nil {
			t.Fatal(err)
		}
		dropEditedFields(&x.resp, x.req.respEdits)
		out = appendResponseHead(out[:0], &x.resp, &x.req, 1, true, outLength)
		relayed = append(relayed[:0], out...)
	}
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
	if want := "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Env: prod\r\nVia: sluice\r\nX-Rule: 2\r\n\r\n"; string(fwd) != want {
		t.Errorf("forwarded %q, want %q", fwd, want)
	}
	if want := "HTTP/1.1 200 OK\r\nX-Frame-Options: DENY\r\nContent-Length: 2\r\n\r\n"; string(relayed) != want {
		t.Errorf("relayed %q, want %q", relayed, want)
	}
}
