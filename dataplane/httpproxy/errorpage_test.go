package httpproxy

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// readExactly reads len(want) bytes and compares them with want.
func readExactly(t *testing.T, br *bufio.Reader, want string) {
	t.Helper()
	got := make([]byte, len(want))
	if n, err := io.ReadFull(br, got); err != nil {
		t.Fatalf("read %q: %v; want %q", got[:n], err, want)
	}
	if string(got) != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
}

// TestErrorPages: the proxy's own 503, 502 and 504 answers are replaced by
// the configured pages, byte for byte, and the connection stays open as
// with the built-in answers; a HEAD request gets the head only.
func TestErrorPages(t *testing.T) {
	dead := listen(t)
	deadAddr := dead.Addr().String()
	dead.Close()
	slow := startBackend(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(defaultTestTimeout):
		}
	}))
	pages := map[int]ErrorPage{
		503: {ContentType: "text/plain; charset=us-ascii", Body: []byte("down for maintenance\n")},
		502: {Body: []byte("<h1>bad gateway</h1>")},
		504: {ContentType: "application/json", Body: []byte(`{"error":"timeout"}`)},
	}
	for _, tc := range []struct {
		name     string
		director Director
		want     string
	}{
		{"no endpoint", failDirector{}, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=us-ascii\r\n" +
			"Cache-Control: no-cache\r\nContent-Length: 21\r\n\r\ndown for maintenance\n"},
		{"connect refused", &rrDirector{eps: []*upstream.Endpoint{upstream.New("web", "dead", deadAddr)}},
			"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html; charset=utf-8\r\n" +
				"Cache-Control: no-cache\r\nContent-Length: 20\r\n\r\n<h1>bad gateway</h1>"},
		{"response timeout", &rrDirector{eps: []*upstream.Endpoint{slow.ep}},
			"HTTP/1.1 504 Gateway Timeout\r\nContent-Type: application/json\r\n" +
				"Cache-Control: no-cache\r\nContent-Length: 19\r\n\r\n{\"error\":\"timeout\"}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, &Config{Director: tc.director, ResponseTimeout: 200 * time.Millisecond, ErrorPages: pages})
			conn := p.dial()
			br := bufio.NewReader(conn)
			io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			readExactly(t, br, tc.want)
			// The connection stays open; HEAD gets the head only.
			head, _, _ := strings.Cut(tc.want, "\r\n\r\n")
			io.WriteString(conn, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
			readExactly(t, br, head+"\r\n\r\n")
			// An HTTP/1.0 keep-alive client is told the connection stays.
			io.WriteString(conn, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
			readExactly(t, br, strings.Replace(tc.want, "\r\n\r\n", "\r\nConnection: keep-alive\r\n\r\n", 1))
			// The client's close is honoured.
			io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			readExactly(t, br, strings.Replace(tc.want, "\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1))
			expectEOF(t, br)
		})
	}
}

// TestErrorPageRedirect: a page with Redirect answers RedirectCode with
// Location and an empty body, whatever Body says.
func TestErrorPageRedirect(t *testing.T) {
	for _, tc := range []struct {
		code int
		want string
	}{
		{0, "HTTP/1.1 302 Found\r\n"},
		{307, "HTTP/1.1 307 Temporary Redirect\r\n"},
	} {
		p := startProxy(t, &Config{Director: failDirector{}, ErrorPages: map[int]ErrorPage{
			503: {Redirect: "https://status.example.com/?from=lb", RedirectCode: tc.code, Body: []byte("ignored"), ContentType: "text/plain"},
		}})
		conn := p.dial()
		br := bufio.NewReader(conn)
		want := tc.want + "Location: https://status.example.com/?from=lb\r\nCache-Control: no-cache\r\nContent-Length: 0\r\n\r\n"
		for _, method := range []string{"GET", "HEAD", "GET"} {
			io.WriteString(conn, method+" / HTTP/1.1\r\nHost: x\r\n\r\n")
			readExactly(t, br, want)
		}
		// Through net/http's parser too.
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if r := readResponse(t, br, "GET"); r.header("Location") != "https://status.example.com/?from=lb" || r.body != "" {
			t.Errorf("got %s Location=%q body=%q", r.status, r.header("Location"), r.body)
		}
	}
}

// TestErrorPagesKeepConnectionOnlyWhenBodyWasRead: as with the built-in
// answers, a request whose body was not read in full closes the connection.
func TestErrorPagesKeepConnectionOnlyWhenBodyWasRead(t *testing.T) {
	p := startProxy(t, &Config{Director: failDirector{}, ErrorPages: map[int]ErrorPage{503: {Body: []byte("sorry")}}})
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npartial")
	readExactly(t, br, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html; charset=utf-8\r\n"+
		"Cache-Control: no-cache\r\nContent-Length: 5\r\nConnection: close\r\n\r\nsorry")
	expectEOF(t, br)
}

// TestErrorPagesDoNotReplaceEndpointAnswers: a 503 from an endpoint is
// relayed as it is.
func TestErrorPagesDoNotReplaceEndpointAnswers(t *testing.T) {
	b := startBackend(t, "b1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(503)
		io.WriteString(w, "endpoint busy")
	}))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}, ErrorPages: map[int]ErrorPage{
		503: {Body: []byte("proxy page")},
		502: {Redirect: "https://status.example.com/"},
	}})
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	r := readResponse(t, br, "GET")
	if r.code != 503 || r.body != "endpoint busy" || r.header("Content-Type") != "text/plain" {
		t.Errorf("got %s type=%q body=%q, want the endpoint's 503", r.status, r.header("Content-Type"), r.body)
	}
}

// TestErrorPagesFollowSetConfig: pages apply from the next request after
// SetConfig, and statuses without a page keep the built-in answer.
func TestErrorPagesFollowSetConfig(t *testing.T) {
	p := startProxy(t, &Config{Director: failDirector{}})
	conn := p.dial()
	br := bufio.NewReader(conn)
	get := func() *rawResponse {
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		return readResponse(t, br, "GET")
	}
	if r := get(); r.code != 503 || r.body != "no endpoint available\n" {
		t.Fatalf("built-in: %s %q", r.status, r.body)
	}
	p.srv.SetConfig(&Config{Director: failDirector{}, ErrorPages: map[int]ErrorPage{503: {Body: []byte("custom")}}})
	if r := get(); r.code != 503 || r.body != "custom" {
		t.Fatalf("after SetConfig: %s %q", r.status, r.body)
	}
	p.srv.SetConfig(&Config{Director: failDirector{}, ErrorPages: map[int]ErrorPage{502: {Body: []byte("custom")}}})
	if r := get(); r.code != 503 || r.body != "no endpoint available\n" {
		t.Fatalf("page for another status: %s %q", r.status, r.body)
	}
	// A page that does not validate is left out rather than sent.
	p.srv.SetConfig(&Config{Director: failDirector{}, ErrorPages: map[int]ErrorPage{503: {Redirect: "https://x/\r\nSet-Cookie: a=b"}}})
	if r := get(); r.code != 503 || r.body != "no endpoint available\n" || r.header("Set-Cookie") != "" {
		t.Fatalf("invalid page: %s %q", r.status, r.body)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"empty", Config{}, true},
		{"all", Config{MaxConnectionAge: time.Minute, MaxRequestsPerConnection: 100, ErrorPages: map[int]ErrorPage{
			502: {Body: []byte("x")}, 503: {Redirect: "/maintenance", RedirectCode: 308}, 504: {ContentType: "text/plain"},
		}}, true},
		{"status 500", Config{ErrorPages: map[int]ErrorPage{500: {Body: []byte("x")}}}, false},
		{"redirect code", Config{ErrorPages: map[int]ErrorPage{503: {Redirect: "/", RedirectCode: 200}}}, false},
		{"location CRLF", Config{ErrorPages: map[int]ErrorPage{503: {Redirect: "/\r\nX: y"}}}, false},
		{"content type LF", Config{ErrorPages: map[int]ErrorPage{503: {ContentType: "text/html\n"}}}, false},
		{"negative age", Config{MaxConnectionAge: -time.Second}, false},
		{"negative requests", Config{MaxRequestsPerConnection: -1}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// TestErrorPageAnswerDoesNotAllocate: answering with a built page writes
// its precomputed bytes.
func TestErrorPageAnswerDoesNotAllocate(t *testing.T) {
	cfg := (&Config{ErrorPages: map[int]ErrorPage{503: {Body: []byte("x")}, 502: {Redirect: "/"}}}).withDefaults()
	var sink int
	n := testing.AllocsPerRun(100, func() {
		for _, st := range []int{502, 503} {
			for _, minor := range []uint8{0, 1} {
				sink += len(cfg.errorPage(st).bytes(minor, minor == 1, false))
				sink += len(cfg.errorPage(st).bytes(minor, false, true))
			}
		}
	})
	if n != 0 {
		t.Errorf("%v allocations", n)
	}
	if cfg.errorPage(504) != nil || cfg.errorPage(404) != nil {
		t.Error("a page for a status without one")
	}
}
