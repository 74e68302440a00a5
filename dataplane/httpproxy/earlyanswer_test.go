package httpproxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// The tests of an endpoint's early answer: a final response sent before
// it read the whole request body (RFC 9112 §9.5), which reaches the client
// as the endpoint's answer, not as the proxy's 502 or 504.

// refusal413 is what the test endpoints answer early, as Python's
// http.server's send_error does: a small body, and the connection closes.
const refusal413 = "HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large"

// chunked encodes body as chunks of at most size bytes, with the last chunk.
func chunked(body []byte, size int) []byte {
	var b bytes.Buffer
	for len(body) > 0 {
		n := min(size, len(body))
		fmt.Fprintf(&b, "%x\r\n", n)
		b.Write(body[:n])
		b.WriteString("\r\n")
		body = body[n:]
	}
	b.WriteString("0\r\n\r\n")
	return b.Bytes()
}

// upload is a client that sends a request head and then its body in
// pieces of piece bytes, pause apart, from a goroutine that stops at its
// first failed write, and reads the answer meanwhile, as a client that
// watches for an early answer does (curl, Go's Transport). It returns the
// response, how long it took, the reader for what follows it, and how
// many body bytes the client could write.
func upload(t *testing.T, c net.Conn, head string, body []byte, piece int, pause time.Duration) (*rawResponse, time.Duration, *bufio.Reader, *atomic.Int64) {
	t.Helper()
	start := time.Now()
	var wrote atomic.Int64
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		if _, err := io.WriteString(c, head); err != nil {
			return
		}
		for len(body) > 0 {
			time.Sleep(pause)
			n, err := c.Write(body[:min(piece, len(body))])
			wrote.Add(int64(n))
			if err != nil {
				return
			}
			body = body[n:]
		}
	}()
	br := bufio.NewReader(c)
	r := readResponse(t, br, "POST")
	for r.code >= 100 && r.code <= 199 {
		r = readResponse(t, br, "POST") // interim: the final one follows
	}
	return r, time.Since(start), br, &wrote
}

// tlsEndpoint starts a TLS endpoint of Go's net/http serving h, with the
// server configuration cfg when not nil, and returns it as an endpoint
// that trusts its certificate.
func tlsEndpoint(t *testing.T, h http.Handler, cfg *tls.Config) *upstream.Endpoint {
	s := httptest.NewUnstartedServer(h)
	s.TLS = cfg
	s.StartTLS()
	t.Cleanup(s.Close)
	ep := upstream.New("web", "b1", s.Listener.Addr().String())
	ep.SetTLS(&tls.Config{InsecureSkipVerify: true})
	return ep
}

// contentLength is the head of a POST with a Content-Length body of n bytes.
func contentLength(n int) string {
	return "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(n) + "\r\n\r\n"
}

const chunkedHead = "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

// earlyUploads are request bodies that take the engine's ways of sending
// one: a Content-Length body below spliceMin, copied (sent in pieces, so
// that the endpoint is gone before the last ones are written); a large
// one, spliced, or copied through a 16 KiB buffer where splicing does not
// pay (eachSpliceMode); a chunked one, decoded and re-encoded.
var earlyUploads = []struct {
	name  string
	head  string
	body  []byte
	piece int
	pause time.Duration
}{
	{"copied", contentLength(60 << 10), pattern(60 << 10), 4 << 10, 20 * time.Millisecond},
	{"large", contentLength(8 << 20), pattern(8 << 20), 256 << 10, 0},
	{"chunked", chunkedHead, chunked(pattern(8<<20), 32<<10), 256 << 10, 0},
}

// An endpoint that answers right after the request head and closes, as
// Python's http.server does: its answer reaches the client, which then
// sees its connection close (its body was not all read), and the endpoint
// connection is not pooled.
func TestEarlyAnswerEndpointCloses(t *testing.T) { eachSpliceMode(t, earlyAnswerEndpointCloses) }

func earlyAnswerEndpointCloses(t *testing.T) {
	for _, tt := range earlyUploads {
		t.Run(tt.name, func(t *testing.T) {
			var heads atomic.Int64
			ep := upstream.New("web", "b1", rawBackend(t, func(c net.Conn, br *bufio.Reader) {
				readRequestHead(br)
				heads.Add(1)
				io.WriteString(c, refusal413)
			}))
			p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
			c := p.dial()
			r, _, br, _ := upload(t, c, tt.head, tt.body, tt.piece, tt.pause)
			if r.code != 413 || r.body != "too large" {
				t.Fatalf("got %s %q, want the endpoint's 413 \"too large\"", r.status, r.body)
			}
			if !closes(r) {
				t.Errorf("Connection %q, want close: the request body was not read", r.headers["connection"])
			}
			expectEOF(t, br)
			if n := heads.Load(); n != 1 {
				t.Errorf("the endpoint got the request %d times, want 1", n)
			}
			c.Close()
			if ci := p.info(); ci.Requests != 1 {
				t.Errorf("ConnInfo.Requests = %d, want 1", ci.Requests)
			}
			waitCount(t, "endpoint connections", ep.Conns, 0)
			if n := ep.Inflight(); n != 0 {
				t.Errorf("endpoint in-flight %d, want 0", n)
			}
		})
	}
}

// slowUploads are request bodies that a client sends for about a second,
// a piece every pause, down the ways of sending a body of earlyUploads.
var slowUploads = []struct {
	name  string
	head  string
	body  []byte
	piece int
	pause time.Duration
}{
	{"copied", contentLength(60 << 10), pattern(60 << 10), 4 << 10, 60 * time.Millisecond},
	{"large", contentLength(4 << 20), pattern(4 << 20), 256 << 10, 60 * time.Millisecond},
	{"chunked", chunkedHead, chunked(pattern(1<<20), 32<<10), 64 << 10, 60 * time.Millisecond},
}

// An endpoint that refuses an upload as soon as its head came, says it
// closes, and reads on, discarding the body (nginx's lingering close):
// its answer reaches a slow client while the client still sends, as RFC
// 9112 §9.5 wants and HAProxy does, not once the client sent it all. The
// client's connection then closes (the rest of its body is not read), and
// the endpoint's is not pooled. So does a refusal that comes after some
// of the body, behind a 100 Continue that was no answer.
func TestEarlyRefusalWhileBodyStreams(t *testing.T) { eachSpliceMode(t, earlyRefusalWhileBodyStreams) }

func earlyRefusalWhileBodyStreams(t *testing.T) {
	answers := []struct {
		name, before string
		lag          int64 // body bytes the endpoint reads before it answers
		answer       string
		status, body string
	}{
		{"413", "", 0, refusal413, "413", "too large"},
		{"400 from HTTP/1.0", "", 0, "HTTP/1.0 400 Bad Request\r\nContent-Length: 3\r\n\r\nbad", "400", "bad"},
		{"401 without a body", "", 0, "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", "401", ""},
		{"413 after a 100", "HTTP/1.1 100 Continue\r\n\r\n", 16 << 10, refusal413, "413", "too large"},
	}
	for _, a := range answers {
		for _, tt := range slowUploads {
			t.Run(a.name+"/"+tt.name, func(t *testing.T) {
				var heads atomic.Int64
				ep := upstream.New("web", "b1", rawBackend(t, func(c net.Conn, br *bufio.Reader) {
					for {
						req, err := http.ReadRequest(br)
						if err != nil {
							return
						}
						heads.Add(1)
						io.WriteString(c, a.before)
						io.CopyN(io.Discard, req.Body, a.lag)
						io.WriteString(c, a.answer)
						if _, err := io.Copy(io.Discard, req.Body); err != nil {
							return
						}
					}
				}))
				p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
				c := p.dial()
				r, took, br, wrote := upload(t, c, tt.head, tt.body, tt.piece, tt.pause)
				sent := wrote.Load()
				if strconv.Itoa(r.code) != a.status || r.body != a.body {
					t.Fatalf("got %s %q after %v, want the endpoint's %s %q", r.status, r.body, took, a.status, a.body)
				}
				if sent >= int64(len(tt.body)) {
					t.Errorf("the answer came after %v, once the client had sent all of its %d-byte body: it waited for the body", took, len(tt.body))
				}
				if !closes(r) {
					t.Errorf("Connection %q, want close: the request body was not all read", r.headers["connection"])
				}
				expectEOF(t, br)
				if n := heads.Load(); n != 1 {
					t.Errorf("the endpoint got the request %d times, want 1", n)
				}
				waitCount(t, "endpoint connections", ep.Conns, 0)
				if n := ep.Inflight(); n != 0 {
					t.Errorf("endpoint in-flight %d, want 0", n)
				}
			})
		}
	}
	// Over TLS the watch wakes on records, session tickets among them,
	// which tell nothing until decrypted.
	refuse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		rc.EnableFullDuplex()
		w.Header().Set("Connection", "close")
		w.Header().Set("Content-Length", "10")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		io.WriteString(w, "too large\n")
		rc.Flush()
		io.Copy(io.Discard, r.Body)
	})
	for _, tt := range []struct {
		name string
		cfg  *tls.Config
	}{
		{"TLS", nil},
		{"TLS with a ticket behind the handshake", &tls.Config{ClientAuth: tls.RequestClientCert}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{tlsEndpoint(t, refuse, tt.cfg)}}})
			up := slowUploads[1]
			r, took, br, wrote := upload(t, p.dial(), up.head, up.body, up.piece, up.pause)
			sent := wrote.Load()
			if r.code != 413 || r.body != "too large\n" {
				t.Fatalf("got %s %q after %v, want the endpoint's 413", r.status, r.body, took)
			}
			if sent >= int64(len(up.body)) {
				t.Errorf("the answer came after %v, once the client had sent all of its body", took)
			}
			expectEOF(t, br)
		})
	}
}

// An endpoint that answers before it read the body, and reads all of the
// body, with an answer that may want it: one that streams its answer as
// it reads, one that refuses but keeps the connection, one whose answer
// may end only after the body. The body goes on to it in full before its
// answer is read, and the client's connection stays open, as before; the
// endpoint's is pooled unless its answer said close.
func TestEarlyAnswerThatMayWantTheBody(t *testing.T) {
	for _, a := range []struct {
		name, answer, status, body string
		conns                      int64
	}{
		{"200", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly", "200", "early", 1},
		{"401 kept open", "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\nContent-Length: 4\r\n\r\nwho?", "401", "who?", 1},
		{"401 chunked", "HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwho?\r\n0\r\n\r\n", "401", "who?", 2},
	} {
		t.Run(a.name, func(t *testing.T) {
			got := make(chan int64, 2)
			var conns atomic.Int64
			ep := upstream.New("web", "b1", rawBackend(t, func(c net.Conn, br *bufio.Reader) {
				conns.Add(1)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.WriteString(c, a.answer)
					n, _ := io.Copy(io.Discard, req.Body)
					got <- n
				}
			}))
			p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
			c := p.dial()
			for _, tt := range slowUploads[:2] {
				r, took, _, _ := upload(t, c, tt.head, tt.body, tt.piece, tt.pause/3)
				if strconv.Itoa(r.code) != a.status || r.body != a.body || closes(r) {
					t.Fatalf("%s: got %s %q close=%v after %v, want %s %q on a connection kept open", tt.name, r.status, r.body, closes(r), took, a.status, a.body)
				}
				if n := <-got; n != int64(len(tt.body)) {
					t.Errorf("%s: the endpoint got %d bytes of the body, want %d", tt.name, n, len(tt.body))
				}
			}
			if n := conns.Load(); n != a.conns {
				t.Errorf("the endpoint got %d connections, want %d", n, a.conns)
			}
		})
	}
}

// smallWindowBackend is rawBackend with a small receive buffer, set on the
// listening socket so that accepted connections advertise a small window:
// an endpoint that stops reading stalls the proxy's writes after a few
// MiB (the proxy's send buffer), not after the tens of MiB loopback's
// autotuning allows.
func smallWindowBackend(t testing.TB, fn func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10)
		})
		return errors.Join(err, serr)
	}}
	ln, err := lc.Listen(testCtx(t), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(defaultTestTimeout))
			// Served on this goroutine: the tests make one connection.
			fn(c, bufio.NewReader(c))
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// An endpoint that answers right after the request head and then neither
// reads nor closes: the proxy's writes of the body stall, and the answer
// reaches the client within a few seconds, not when the response timeout
// ends the wait with a 504.
func TestEarlyAnswerEndpointStopsReading(t *testing.T) {
	const responseTimeout = 6 * time.Second
	// The body must be more than the kernel can hold on the way: the
	// proxy's receive buffer on the client connection, which loopback
	// autotunes up to tcp_rmem's third figure (32 MiB on some machines),
	// the client's send buffer, the pipe and the endpoint connection's
	// buffers. At 32 MiB, a run where the receive buffer grew all the way
	// took the whole body.
	const size = 64 << 20
	for _, tt := range []struct {
		name string
		head string
		body []byte
	}{
		{"spliced", contentLength(size), pattern(size)},
		{"chunked", chunkedHead, chunked(pattern(size), 64<<10)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			ep := upstream.New("web", "b1", smallWindowBackend(t, func(c net.Conn, br *bufio.Reader) {
				readRequestHead(br)
				io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\nContent-Length: 4\r\n\r\nwho?")
				select { // holds the connection open, unread
				case <-release:
				case <-time.After(defaultTestTimeout):
				}
			}))
			defer close(release)
			p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}, ResponseTimeout: responseTimeout})
			c := p.dial()
			r, took, br, wrote := upload(t, c, tt.head, tt.body, 1<<20, 0)
			if r.code != 401 || r.body != "who?" || r.header("WWW-Authenticate") != "Basic" {
				t.Fatalf("got %s %q after %v, want the endpoint's 401 \"who?\"", r.status, r.body, took)
			}
			// A stall is told after a whole closeCheckInterval in which
			// the endpoint took next to nothing (the kernel takes more of
			// the body in the first second or two, as buffers grow): the
			// answer came before responseTimeout, or it would be a 504.
			// How soon is measured, not asserted: a busy machine moves it.
			if !closes(r) {
				t.Errorf("Connection %q, want close", r.headers["connection"])
			}
			expectEOF(t, br)
			if n := wrote.Load(); n >= int64(len(tt.body)) {
				t.Errorf("the client could write all of its %d-byte body: the endpoint's writes never stalled", n)
			}
			waitCount(t, "endpoint connections", ep.Conns, 0)
		})
	}
}

// A TLS endpoint that stops reading an upload and never answers: the
// client gets its 504 when response_timeout has passed since the endpoint
// last took a byte, not a second response_timeout later. (A TLS write that
// timed out fails every later write at once, so each slice past the first
// deadline was spent spinning.)
func TestStalledTLSUploadEndsAtResponseTimeout(t *testing.T) {
	const responseTimeout = 2 * time.Second
	hold := make(chan struct{})
	// The endpoint's session ticket comes after the handshake and waits
	// on the socket: no answer, though the socket holds records.
	ep := tlsEndpoint(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		select { // reads nothing of the body, answers nothing
		case <-hold:
		case <-time.After(defaultTestTimeout):
		}
	}), &tls.Config{ClientAuth: tls.RequestClientCert})
	t.Cleanup(func() { close(hold) })
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}, ResponseTimeout: responseTimeout})
	r, took, _, _ := upload(t, p.dial(), contentLength(64<<20), pattern(64<<20), 1<<20, 0)
	if r.code != 504 {
		t.Fatalf("got %s after %v, want 504", r.status, took)
	}
	// The bound is half a response_timeout past it: the fault took a
	// whole one more.
	if took > responseTimeout*3/2 {
		t.Errorf("504 after %v; want it once response_timeout (%v) passed", took, responseTimeout)
	}
}

// A TLS upload that takes longer than response_timeout from start to end,
// but whose client and endpoint never pause for that long: it goes
// through whole, as it does to a plaintext endpoint. response_timeout is
// a wait without progress, not a bound on the whole request.
//
// The endpoint has the whole response_timeout to take what it is sent, and
// to answer, however busy the machine; the uploads outlast it by far. They
// run side by side, as each takes seconds.
func TestSlowTLSUploadOutlastsResponseTimeout(t *testing.T) {
	const responseTimeout = 2 * time.Second
	ep := tlsEndpoint(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "got %d", n)
	}), nil)
	const size = 512 << 10
	for _, tt := range []struct {
		name, head string
		pieces     int // the body is sent in, each after a pause
		pause      time.Duration
	}{
		// 16 pieces 250 ms apart: two response_timeouts from the head
		// to the last byte.
		{"length", contentLength(size), 16, 250 * time.Millisecond},
		{"chunked", chunkedHead, 16, 250 * time.Millisecond},
		// The client pauses longer than response_timeout: its wait is
		// the client's timeout, not the endpoint's.
		{"length, client pauses", contentLength(size), 2, responseTimeout + 500*time.Millisecond},
		{"chunked, client pauses", chunkedHead, 2, responseTimeout + 500*time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}, ResponseTimeout: responseTimeout})
			body := pattern(size)
			if tt.head == chunkedHead {
				body = chunked(body, 32<<10)
			}
			piece := (len(body) + tt.pieces - 1) / tt.pieces
			r, took, _, _ := upload(t, p.dial(), tt.head, body, piece, tt.pause)
			if want := fmt.Sprintf("got %d", size); r.code != 200 || r.body != want {
				t.Fatalf("got %s %q after %v, want 200 %q", r.status, r.body, took, want)
			}
		})
	}
}

// An endpoint of Go's net/http that refuses a large upload without
// reading it: the server answers with Connection: close, half-closes,
// and resets the connection half a second later. Over TLS too, where what
// waits on the socket is records, not yet a response.
func TestEarlyAnswerGoServer(t *testing.T) {
	refuse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	})
	for _, tt := range []struct {
		name string
		ep   func(t *testing.T) *upstream.Endpoint
	}{
		{"plain", func(t *testing.T) *upstream.Endpoint { return startBackend(t, "b1", refuse).ep }},
		{"TLS", func(t *testing.T) *upstream.Endpoint { return tlsEndpoint(t, refuse, nil) }},
		// Its session ticket comes after the handshake, ahead of the
		// answer on the socket.
		{"TLS with a ticket behind the handshake", func(t *testing.T) *upstream.Endpoint {
			return tlsEndpoint(t, refuse, &tls.Config{ClientAuth: tls.RequestClientCert})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{tt.ep(t)}}, ResponseTimeout: 6 * time.Second})
			c := p.dial()
			r, took, br, _ := upload(t, c, contentLength(8<<20), pattern(8<<20), 256<<10, 0)
			if r.code != 413 || r.body != "too large\n" {
				t.Fatalf("got %s %q after %v, want the endpoint's 413", r.status, r.body, took)
			}
			expectEOF(t, br)
		})
	}
}

// An endpoint that asks for the body of an Expect: 100-continue request,
// reads some of it, then refuses it and closes: the 100 and then its
// answer reach the client.
func TestEarlyAnswerAfterContinue(t *testing.T) {
	ep := upstream.New("web", "b1", rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
		io.CopyN(io.Discard, br, 64<<10)
		io.WriteString(c, refusal413)
	}))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
	c := p.dial()
	head := "PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(8<<20) + "\r\nExpect: 100-continue\r\n\r\n"
	r, _, br, _ := upload(t, c, head, pattern(8<<20), 256<<10, 0)
	if r.code != 413 || r.body != "too large" {
		t.Fatalf("got %s %q, want the endpoint's 413", r.status, r.body)
	}
	expectEOF(t, br)
}

// An early answer whose body ends with the connection (HTTP/1.0), from an
// endpoint that stops reading and later closes with the request unread,
// which resets the connection: the reset ends the body, which reaches the
// client whole, not cut short: re-framed as chunks for an HTTP/1.1 client,
// spliced or copied as it comes to an HTTP/1.0 one (bothSpliceModes).
func TestEarlyAnswerCloseDelimited(t *testing.T) { bothSpliceModes(t, earlyAnswerCloseDelimited) }

func earlyAnswerCloseDelimited(t *testing.T) {
	for _, tt := range []struct {
		name    string
		proto   string
		chunked bool // re-framed for an HTTP/1.1 client; relayed as it is to an HTTP/1.0 one
	}{
		{"HTTP/1.1 client", "HTTP/1.1", true},
		{"HTTP/1.0 client", "HTTP/1.0", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ep := upstream.New("web", "b1", smallWindowBackend(t, func(c net.Conn, br *bufio.Reader) {
				readRequestHead(br)
				io.WriteString(c, "HTTP/1.0 413 Payload Too Large\r\n\r\ntoo large")
				time.Sleep(closeCheckInterval + closeCheckInterval/2) // the proxy reads the answer, then the reset comes
			}))
			p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
			c := p.dial()
			head := strings.Replace(contentLength(32<<20), "HTTP/1.1", tt.proto, 1)
			r, _, br, _ := upload(t, c, head, pattern(32<<20), 1<<20, 0)
			if r.code != 413 || r.body != "too large" || r.chunked != tt.chunked {
				t.Fatalf("got %s %q (chunked: %v), want the endpoint's 413 \"too large\" (chunked: %v)", r.status, r.body, r.chunked, tt.chunked)
			}
			expectEOF(t, br)
		})
	}
}

// An endpoint that answers after the body keeps its connection pooled.
// One that refuses a body it read and closes leaves the client's
// connection open: its body was read in full. (A refusal that comes while
// the body still streams is TestEarlyRefusalWhileBodyStreams's.)
func TestAnswerAfterBodyKeepsConnections(t *testing.T) {
	var conns atomic.Int64
	ep := upstream.New("web", "b1", rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/refuse" {
				io.Copy(io.Discard, req.Body)
				io.WriteString(c, refusal413)
				return
			}
			n, _ := io.Copy(io.Discard, req.Body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(strconv.FormatInt(n, 10)))+"\r\n\r\n"+strconv.FormatInt(n, 10))
		}
	}))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
	c := p.dial()
	br := bufio.NewReader(c)
	body := pattern(4 << 20)
	for i, path := range []string{"/ok", "/ok", "/refuse", "/ok"} {
		go func() {
			io.WriteString(c, "POST "+path+" HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n")
			c.Write(body)
		}()
		r := readResponse(t, br, "POST")
		want, code := strconv.Itoa(len(body)), 200
		if path == "/refuse" {
			want, code = "too large", 413
		}
		if r.code != code || r.body != want || closes(r) {
			t.Fatalf("request %d (%s): %s %q close=%v, want %d %q on a connection kept open", i, path, r.status, r.body, closes(r), code, want)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("the endpoint got %d connections, want 2: one pooled until it refused, one after", n)
	}
}

// An endpoint that sends an interim 100 Continue unasked and then reads
// the body with a pause long enough to stall the proxy's writes: the 100
// is not an early answer, the body goes in full, and the final answer
// follows it.
func TestInterimAnswerIsNotEarly(t *testing.T) {
	ep := upstream.New("web", "b1", smallWindowBackend(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
		io.CopyN(io.Discard, req.Body, 1<<20)
		time.Sleep(closeCheckInterval + 500*time.Millisecond)
		n, _ := io.Copy(io.Discard, req.Body)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n"+fmt.Sprintf("%08x", n+1<<20))
	}))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
	c := p.dial()
	const size = 32 << 20
	r, _, _, wrote := upload(t, c, contentLength(size), pattern(size), 1<<20, 0)
	if r.code != 200 || r.body != fmt.Sprintf("%08x", size) {
		t.Fatalf("got %s %q, want 200 %08x", r.status, r.body, size)
	}
	if n := wrote.Load(); n != size {
		t.Errorf("the client wrote %d bytes of %d", n, size)
	}
}

// An early answer is the request's answer: it is not sent again, neither
// on a fresh connection to the same endpoint nor to another endpoint, even
// when it came on a pooled connection and the request could be sent again
// (a PUT), and although Retries allows it.
func TestEarlyAnswerIsNotRetried(t *testing.T) { eachSpliceMode(t, earlyAnswerIsNotRetried) }

func earlyAnswerIsNotRetried(t *testing.T) {
	var puts atomic.Int64
	first := upstream.New("web", "first", rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.Method == "PUT" {
				puts.Add(1)
				io.WriteString(c, refusal413)
				return // closes with the body unread: a reset
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
		}
	}))
	rec := &bodyRecorder{name: "other"}
	other := startBackend(t, "other", rec)
	p := startProxy(t, &Config{Director: &skipDirector{eps: []*upstream.Endpoint{first, other.ep}}, Retries: 3})
	c := p.dial()
	br := bufio.NewReader(c)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := readResponse(t, br, "GET"); r.code != 200 || r.body != "first" {
		t.Fatalf("GET: %s %q", r.status, r.body)
	}
	const size = 8 << 20
	head := "PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n"
	r, _, br, _ := upload(t, c, head, pattern(size), 256<<10, 0)
	if r.code != 413 || r.body != "too large" {
		t.Fatalf("PUT: got %s %q, want the first endpoint's 413", r.status, r.body)
	}
	expectEOF(t, br)
	if n := puts.Load(); n != 1 {
		t.Errorf("the first endpoint got the PUT %d times, want 1", n)
	}
	if n := len(rec.bodies()); n != 0 {
		t.Errorf("the other endpoint got %d requests, want 0", n)
	}
	c.Close()
	if ci := p.info(); ci.Retries != 0 || ci.Requests != 2 {
		t.Errorf("ConnInfo retries=%d requests=%d, want 0 2", ci.Retries, ci.Requests)
	}
}

// What the engine relies on: Linux keeps what a peer sent readable after
// the peer reset the connection, and after a write failed on it.
func TestQueuedAnswerOutlivesReset(t *testing.T) {
	ln := listen(t)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		br := bufio.NewReader(c)
		readRequestHead(br)
		io.WriteString(c, refusal413)
		c.Close() // with the body unread: a reset
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), defaultTestTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(defaultTestTimeout))
	io.WriteString(c, contentLength(64<<20))
	var werr error
	for chunk := pattern(64 << 10); werr == nil; {
		_, werr = c.Write(chunk)
	}
	if !errors.Is(werr, syscall.EPIPE) && !errors.Is(werr, syscall.ECONNRESET) {
		t.Fatalf("write failed with %v, want EPIPE or ECONNRESET", werr)
	}
	got, err := io.ReadAll(c)
	if string(got) != refusal413 {
		t.Fatalf("read %q (%v) after the reset, want the answer sent before it", got, err)
	}
}
