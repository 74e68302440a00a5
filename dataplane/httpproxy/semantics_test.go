package httpproxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// captureBackend answers every request with the given raw response and
// sends the request heads it received on heads.
func captureBackend(t testing.TB, response string) (string, chan string) {
	heads := make(chan string, 16)
	addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		for {
			head := readRequestHead(br)
			if head == "" {
				return
			}
			heads <- head
			skipBody(head, br)
			if _, err := io.WriteString(c, response); err != nil {
				return
			}
		}
	})
	return addr, heads
}

// skipBody consumes the body of a request head the proxy sent.
func skipBody(head string, br *bufio.Reader) { readBody(head, br) }

// readBody reads the body of a request head the proxy sent (it frames
// bodies with exactly these spellings); the error says it was cut short.
func readBody(head string, br *bufio.Reader) ([]byte, error) {
	if strings.Contains(head, "\r\nTransfer-Encoding: chunked\r\n") {
		body, err := io.ReadAll(httputil.NewChunkedReader(br))
		readRequestHead(br) // trailer section
		return body, err
	}
	if _, v, ok := strings.Cut(head, "\r\nContent-Length: "); ok {
		n, _ := strconv.Atoi(v[:strings.Index(v, "\r")])
		body := make([]byte, n)
		_, err := io.ReadFull(br, body)
		return body, err
	}
	return nil, nil
}

func TestHopByHopFieldsRemovedBothWays(t *testing.T) {
	addr, heads := captureBackend(t, "HTTP/1.1 200 OK\r\nConnection: X-Resp-Hop\r\nX-Resp-Hop: 1\r\nKeep-Alive: timeout=5\r\n"+
		"Upgrade: h2c\r\nTrailer: X-T\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok")
	ep := upstream.New("web", "b1", addr)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}, Forwarded: ForwardNone})
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET /path?q=1 HTTP/1.1\r\nHost: example.com:8080\r\nConnection: X-Foo, keep-alive\r\nX-Foo: secret\r\n"+
		"Keep-Alive: 300\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: websocket\r\nX-End: 1\r\n\r\n")
	got := <-heads
	// Trailer is end-to-end (RFC 9110 §6.6.2): the trailer fields it
	// announces are forwarded.
	want := "GET /path?q=1 HTTP/1.1\r\nHost: example.com:8080\r\nTrailer: X-T\r\nX-End: 1\r\n\r\n"
	if got != want {
		t.Errorf("backend received\n%q\nwant\n%q", got, want)
	}
	r := readResponse(t, br, "GET")
	for _, h := range []string{"Connection", "X-Resp-Hop", "Keep-Alive", "Upgrade", "Proxy-Connection"} {
		if v := r.header(h); v != "" {
			t.Errorf("response carries hop-by-hop %s: %q", h, v)
		}
	}
	if r.header("X-Kept") != "yes" || r.header("Trailer") != "X-T" || r.body != "ok" {
		t.Errorf("response %+v, want X-Kept and Trailer forwarded", r)
	}
}

func TestRequestFramingIsRedone(t *testing.T) {
	addr, heads := captureBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	ep := upstream.New("web", "b1", addr)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}, Forwarded: ForwardNone})
	conn := p.dial()
	br := bufio.NewReader(conn)
	for _, tc := range []struct{ req, want string }{
		// An identical Content-Length list collapses to one value.
		{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n"},
		// Case and whitespace of framing fields are normalized.
		{"POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding:  Chunked \r\n\r\n0\r\n\r\n", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"},
		// Lines ending in bare LF go out with CRLF; OWS is trimmed.
		{"GET / HTTP/1.1\nHost:x\nX-A:   v  \n\n", "GET / HTTP/1.1\r\nHost: x\r\nX-A: v\r\n\r\n"},
		// HTTP/1.0 goes up as HTTP/1.1.
		{"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
	} {
		io.WriteString(conn, tc.req)
		got := <-heads
		if !strings.HasPrefix(got, strings.TrimSuffix(tc.want, "\r\n")) || got != tc.want {
			t.Errorf("for %q backend received %q, want %q", tc.req, got, tc.want)
		}
		readResponse(t, br, "GET")
	}
}

// A close-delimited response of 300 KiB, spliced to an HTTP/1.0 client
// or copied (bothSpliceModes).
func TestCloseDelimitedResponse(t *testing.T) { bothSpliceModes(t, closeDelimitedResponse) }

func closeDelimitedResponse(t *testing.T) {
	body := pattern(300 << 10)
	addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: x/y\r\n\r\n")
		c.Write(body)
	})
	ep := upstream.New("web", "b1", addr)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})

	t.Run("HTTP/1.1 client gets chunks and keeps its connection", func(t *testing.T) {
		conn := p.dial()
		br := bufio.NewReader(conn)
		for i := 0; i < 2; i++ {
			io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			r := readResponse(t, br, "GET")
			if !r.chunked || r.header("Connection") != "" || r.body != string(body) {
				t.Fatalf("chunked=%v connection=%q body %d bytes", r.chunked, r.header("Connection"), len(r.body))
			}
		}
	})
	t.Run("HTTP/1.0 client gets it verbatim", func(t *testing.T) {
		conn := p.dial()
		io.WriteString(conn, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		all, err := io.ReadAll(conn)
		if err != nil {
			t.Fatal(err)
		}
		head, rest, _ := bytes.Cut(all, []byte("\r\n\r\n"))
		if !bytes.Contains(head, []byte("Connection: close")) || bytes.Contains(head, []byte("chunked")) || !bytes.Equal(rest, body) {
			t.Fatalf("head %q, body %d bytes", head, len(rest))
		}
	})
	if ep.Conns() != 0 {
		t.Errorf("close-delimited connections were pooled: %d", ep.Conns())
	}
}

func TestExpectContinue(t *testing.T) {
	b := startBackend(t, "b1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/deny" {
			w.WriteHeader(http.StatusUnauthorized) // without reading the body
			return
		}
		echoHandler(w, r)
	}))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})

	t.Run("endpoint asks for the body", func(t *testing.T) {
		client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: defaultTestTimeout}}
		body := pattern(100 << 10)
		req, _ := http.NewRequestWithContext(testCtx(t), "PUT", "http://"+p.addr+"/", bytes.NewReader(body))
		req.Header.Set("Expect", "100-continue")
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Body-Sha") != sha(body) {
			t.Fatalf("got %d sha %s", resp.StatusCode, resp.Header.Get("X-Body-Sha"))
		}
		if time.Since(start) > defaultTestTimeout/2 {
			t.Errorf("the client waited out its 100-continue timeout: the 100 was not forwarded")
		}
	})
	t.Run("endpoint answers without the body", func(t *testing.T) {
		conn := p.dial()
		br := bufio.NewReader(conn)
		io.WriteString(conn, "PUT /deny HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
		r := readResponse(t, br, "PUT")
		if r.code != 401 || r.header("Connection") != "close" {
			t.Fatalf("got %s connection=%q", r.status, r.header("Connection"))
		}
	})
}

func TestInterimResponsesForwarded(t *testing.T) {
	addr, _ := captureBackend(t, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"+
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	ep := upstream.New("web", "b1", addr)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	head := readRequestHead(br) // same line format as a response head
	if head != "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" {
		t.Fatalf("interim head %q", head)
	}
	if r := readResponse(t, br, "GET"); r.code != 200 || r.body != "ok" {
		t.Fatalf("got %s", r.status)
	}
	// An HTTP/1.0 client does not get interim responses.
	conn = p.dial()
	br = bufio.NewReader(conn)
	io.WriteString(conn, "GET / HTTP/1.0\r\n\r\n")
	line, _ := br.ReadString('\n')
	if line != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("status line %q", line)
	}
}

// TestTooManyInterimResponses: an endpoint that sends more than
// MaxInterim 1xx responses gets a 502 that says so.
func TestTooManyInterimResponses(t *testing.T) {
	addr, _ := captureBackend(t, strings.Repeat("HTTP/1.1 102 Processing\r\n\r\n", MaxInterim+1)+
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	ep := upstream.New("web", "b1", addr)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET / HTTP/1.0\r\n\r\n") // no interim responses to read first
	if r := readResponse(t, br, "GET"); r.code != 502 || r.body != "more than 16 interim (1xx) responses\n" {
		t.Errorf("got %s %q; want a 502 that says why", r.status, r.body)
	}
}

// recordingDirector checks what Pick sees.
type recordingDirector struct {
	ep  *upstream.Endpoint
	mu  sync.Mutex
	got []string
}

func (d *recordingDirector) Pick(r *Request) (*upstream.Endpoint, time.Duration, error) {
	d.mu.Lock()
	d.got = append(d.got, fmt.Sprintf("%s %s %s host=%s ua=%s len=%d", r.Method(), r.Path(), r.Proto(), r.Host(), r.Header("user-agent"), r.ContentLength()))
	d.mu.Unlock()
	d.ep.Acquire()
	return d.ep, 0, nil
}

func TestDirectorSeesTheRequest(t *testing.T) {
	b := startBackend(t, "b1", nameHandler("b1"))
	d := &recordingDirector{ep: b.ep}
	p := startProxy(t, &Config{Director: d})
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET /a?b=c HTTP/1.1\r\nHost: Example.com\r\nUser-Agent: t/1\r\n\r\n")
	readResponse(t, br, "GET")
	io.WriteString(conn, "POST http://other.example:81/x HTTP/1.1\r\nHost: ignored\r\nContent-Length: 2\r\n\r\nhi")
	readResponse(t, br, "POST")
	io.WriteString(conn, "OPTIONS * HTTP/1.0\r\n\r\n")
	readResponse(t, br, "OPTIONS")
	want := []string{
		"GET /a?b=c HTTP/1.1 host=Example.com ua=t/1 len=0",
		"POST http://other.example:81/x HTTP/1.1 host=other.example:81 ua= len=2",
		"OPTIONS * HTTP/1.0 host= ua= len=0",
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if strings.Join(d.got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Pick saw\n%s\nwant\n%s", strings.Join(d.got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSetConfigAppliesToTheNextRequest(t *testing.T) {
	b1 := startBackend(t, "b1", nameHandler("b1"))
	b2 := startBackend(t, "b2", nameHandler("b2"))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b1.ep}}})
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := readResponse(t, br, "GET"); r.body != "b1 /" {
		t.Fatalf("got %q", r.body)
	}
	p.srv.SetConfig(&Config{Director: &rrDirector{eps: []*upstream.Endpoint{b2.ep}}})
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := readResponse(t, br, "GET"); r.body != "b2 /" {
		t.Fatalf("after SetConfig got %q", r.body)
	}
}

func TestHTTP10BackendIsNotPooled(t *testing.T) {
	addr, _ := captureBackend(t, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
	ep := upstream.New("web", "b1", addr)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := readResponse(t, br, "GET"); r.body != "ok" || r.header("Connection") != "" {
		t.Fatalf("got %q connection=%q", r.body, r.header("Connection"))
	}
	if ep.Conns() != 0 {
		t.Errorf("an HTTP/1.0 connection without keep-alive was pooled")
	}
}

func TestTruncatedResponseBody(t *testing.T) {
	addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
	})
	ep := upstream.New("web", "b1", addr)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("a truncated chunked body reached the client as complete")
	}
}

func TestClientAbortsMidBody(t *testing.T) {
	got := make(chan string, 1)
	addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		b, _ := io.ReadAll(br)
		got <- string(b)
	})
	ep := upstream.New("web", "b1", addr)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
	conn := p.dial()
	io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789")
	conn.(*net.TCPConn).CloseWrite()
	if ci := p.info(); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED {
		t.Errorf("reason %v", ci.Reason)
	}
	// The endpoint saw the partial body, then its connection closed.
	if b := <-got; b != "0123456789" {
		t.Errorf("endpoint got %q", b)
	}
	if ep.Conns() != 0 || ep.Inflight() != 0 {
		t.Errorf("endpoint conns=%d inflight=%d", ep.Conns(), ep.Inflight())
	}
}

func TestRequestBodyTimeout(t *testing.T) {
	addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		io.Copy(io.Discard, br)
	})
	ep := upstream.New("web", "b1", addr)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}, IdleTimeout: 200 * time.Millisecond})
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
	r := readResponse(t, br, "POST")
	if r.code != 408 || r.header("Connection") != "close" || r.body != "request body not received in time\n" {
		t.Fatalf("got %s connection=%q %q", r.status, r.header("Connection"), r.body)
	}
}

// A 503 leaves the connection open when the request body was read with
// the head, and closes it when the body is still on the way.
func TestErrorKeepsConnectionOnlyWhenBodyWasRead(t *testing.T) {
	p := startProxy(t, &Config{Director: failDirector{}})
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
	if r := readResponse(t, br, "POST"); r.code != 503 || r.header("Connection") != "" {
		t.Fatalf("got %s connection=%q", r.status, r.header("Connection"))
	}
	io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 30000\r\n\r\nabc")
	if r := readResponse(t, br, "POST"); r.code != 503 || r.header("Connection") != "close" {
		t.Fatalf("got %s connection=%q", r.status, r.header("Connection"))
	}
}
