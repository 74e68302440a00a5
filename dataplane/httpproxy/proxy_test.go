package httpproxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

func nameHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	})
}

// DESIGN problem 1: keep-alive must not pin a client to one backend. A Go
// client makes 30 requests over one connection; round robin over three
// backends must give each exactly 10.
func TestKeepAliveRequestsAreBalancedPerRequest(t *testing.T) {
	var eps []*upstream.Endpoint
	var backends []*backend
	for i := 1; i <= 3; i++ {
		b := startBackend(t, fmt.Sprintf("b%d", i), nameHandler(fmt.Sprintf("b%d", i)))
		backends = append(backends, b)
		eps = append(eps, b.ep)
	}
	p := startProxy(t, &Config{Listener: "public", Director: &rrDirector{eps: eps}})
	client := keepAliveClient()

	counts := map[string]int{}
	reused := 0
	for i := 0; i < 30; i++ {
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			if info.Reused {
				reused++
			}
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(testCtx(t), trace), "GET", "http://"+p.addr+"/r"+strconv.Itoa(i), nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		name, path, _ := strings.Cut(string(body), " ")
		if resp.StatusCode != 200 || path != "/r"+strconv.Itoa(i) {
			t.Fatalf("request %d: got %d %q", i, resp.StatusCode, body)
		}
		counts[name]++
	}
	for _, name := range []string{"b1", "b2", "b3"} {
		if counts[name] != 10 {
			t.Errorf("backend %s answered %d requests, want 10 (all: %v)", name, counts[name], counts)
		}
	}
	if reused != 29 {
		t.Errorf("client reused its connection %d times, want 29", reused)
	}
	if got := p.ln.accepted.Load(); got != 1 {
		t.Errorf("proxy accepted %d client connections, want 1", got)
	}
	// One pooled connection per backend serves all its requests.
	for _, b := range backends {
		if got := b.ln.accepted.Load(); got != 1 {
			t.Errorf("backend %s accepted %d connections, want 1", b.ep.Name, got)
		}
	}
	client.CloseIdleConnections()
	ci := p.info()
	if ci.Requests != 30 || ci.Listener != "public" || ci.Cluster != "web" || ci.Endpoint != "b3" {
		t.Errorf("ConnInfo = %+v", ci)
	}
}

func TestBackendConnectionsArePooled(t *testing.T) {
	b := startBackend(t, "b1", nameHandler("b1"))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	// Three clients in turn, each with its own connection.
	for c := 0; c < 3; c++ {
		conn := p.dial()
		br := bufio.NewReader(conn)
		for i := 0; i < 5; i++ {
			fmt.Fprintf(conn, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
			if r := readResponse(t, br, "GET"); r.body != fmt.Sprintf("b1 /%d", i) {
				t.Fatalf("got %q", r.body)
			}
		}
		conn.Close()
	}
	if got := b.ln.accepted.Load(); got != 1 {
		t.Errorf("backend accepted %d connections for 15 sequential requests, want 1", got)
	}
	if got := b.ep.Conns(); got != 1 {
		t.Errorf("endpoint tracks %d connections, want 1 (pooled)", got)
	}
	if got := b.ep.Inflight(); got != 0 {
		t.Errorf("endpoint in-flight = %d after all exchanges, want 0", got)
	}
}

// echoHandler answers with the request's method, framing and body hash, and
// streams n bytes back when asked with ?n=.
func echoHandler(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	w.Header().Set("X-Body-Len", strconv.FormatInt(n, 10))
	w.Header().Set("X-Body-Sha", hex.EncodeToString(h.Sum(nil)))
	w.Header().Set("X-TE", strings.Join(r.TransferEncoding, ","))
	w.Header().Set("X-Trailer", r.Trailer.Get("X-Sum"))
	w.Header().Set("X-Proto", r.Proto)
	w.Header().Set("X-Host", r.Host)
	if size, _ := strconv.Atoi(r.URL.Query().Get("n")); size > 0 {
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(size))
		}
		w.Write(pattern(size))
		return
	}
	io.WriteString(w, "ok")
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestChunkedRequestAndResponse(t *testing.T) {
	b := startBackend(t, "b1", http.HandlerFunc(echoHandler))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	conn := p.dial()
	br := bufio.NewReader(conn)
	// Chunk extensions are dropped, the trailer is forwarded.
	io.WriteString(conn, "POST /?n=3000&chunked=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"+
		"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Sum: 42\r\n\r\n")
	r := readResponse(t, br, "POST")
	if r.code != 200 || !r.chunked {
		t.Fatalf("got %s chunked=%v", r.status, r.chunked)
	}
	if r.header("X-Body-Sha") != sha([]byte("hello, world")) || r.header("X-TE") != "chunked" || r.header("X-Trailer") != "42" {
		t.Errorf("backend saw len=%s te=%q trailer=%q", r.header("X-Body-Len"), r.header("X-TE"), r.header("X-Trailer"))
	}
	if r.body != string(pattern(3000)) {
		t.Errorf("chunked response body differs (%d bytes)", len(r.body))
	}
	// The connection is still usable.
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := readResponse(t, br, "GET"); r.body != "ok" {
		t.Fatalf("second request: %q", r.body)
	}
}

// smallChunks frames body as chunks of 1 to 300 bytes, some with an
// extension: their lines are a good part of the bytes, so that reads may
// well end inside them (TestBulkBuffersKeepUnconsumedBytes makes sure of
// what then moves to a big buffer).
func smallChunks(w *bytes.Buffer, body []byte) {
	for i := 0; len(body) > 0; i++ {
		n := min(len(body), 1+i*37%300)
		ext := ""
		if i%7 == 0 {
			ext = ";i=" + strconv.Itoa(i)
		}
		fmt.Fprintf(w, "%x%s\r\n", n, ext)
		w.Write(body[:n])
		w.WriteString("\r\n")
		body = body[n:]
	}
}

// TestLargeChunkedUploadPipelined: a chunked request body of 300 KiB in
// small chunks goes on through big buffers once it is large (bulkRead,
// bulkOutput); the bytes, the trailer and a request pipelined right
// behind the body all arrive.
func TestLargeChunkedUploadPipelined(t *testing.T) {
	b := startBackend(t, "b1", http.HandlerFunc(echoHandler))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	conn := p.dial()
	br := bufio.NewReader(conn)
	body := pattern(300 << 10)
	var req bytes.Buffer
	req.WriteString("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n")
	smallChunks(&req, body)
	req.WriteString("0\r\nX-Sum: 42\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
	go conn.Write(req.Bytes())
	r := readResponse(t, br, "POST")
	if r.code != 200 || r.header("X-Body-Sha") != sha(body) || r.header("X-TE") != "chunked" || r.header("X-Trailer") != "42" {
		t.Errorf("%s; backend saw len=%s te=%q trailer=%q, want 200, %d bytes, chunked, 42", r.status, r.header("X-Body-Len"), r.header("X-TE"), r.header("X-Trailer"), len(body))
	}
	if r := readResponse(t, br, "GET"); r.body != "ok" {
		t.Fatalf("pipelined request: %q", r.body)
	}
}

// TestLargeChunkedDownload: a chunked response of 500 KiB in small chunks
// goes on through big buffers once it is large (bulkBuffer, bulkOutput);
// its bytes and trailer arrive, and so does the next response on the
// endpoint connection, sent right behind it.
func TestLargeChunkedDownload(t *testing.T) {
	body := pattern(500 << 10)
	var resp bytes.Buffer
	resp.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n")
	smallChunks(&resp, body)
	resp.WriteString("0\r\nX-Sum: 7\r\n\r\n")
	addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		for i := 0; ; i++ {
			if readRequestHead(br) == "" {
				return
			}
			if i == 0 {
				c.Write(resp.Bytes())
			} else {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
			}
		}
	})
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{upstream.New("c", "raw", addr)}}})
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	r := readResponse(t, br, "GET")
	if r.code != 200 || !r.chunked || r.body != string(body) || r.trailer.Get("X-Sum") != "7" {
		t.Errorf("%s chunked=%v, %d bytes, equal=%v, trailer %q; want 200, chunked, %d bytes, trailer 7", r.status, r.chunked, len(r.body), r.body == string(body), r.trailer.Get("X-Sum"), len(body))
	}
	getBody(t, conn, br, "/next", "next")
}

// TestSlowUploadHoldsNoBigBuffer: a client that sends a large declared
// body slowly is read through the 16 KiB buffer, not the 68 KiB one that a
// read filling it brings (a slow client would otherwise hold it while it
// is waited for); sent fast afterwards, the rest goes through, whole.
// Spliced, the body takes no buffer at all.
func TestSlowUploadHoldsNoBigBuffer(t *testing.T) { eachSpliceMode(t, slowUploadHoldsNoBigBuffer) }

func slowUploadHoldsNoBigBuffer(t *testing.T) {
	b := startBackend(t, "b1", http.HandlerFunc(echoHandler))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	conn := p.dial()
	br := bufio.NewReader(conn)
	body := pattern(1 << 20)
	before := bigClass.inUse()
	fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body))
	// 12 KiB in 1 KiB pieces: less than one 16 KiB read, whatever the
	// reads gather.
	const slow = 12 << 10
	for i := 0; i < slow; i += 1 << 10 {
		conn.Write(body[i : i+1<<10])
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if n := bigClass.inUse(); n > before {
		t.Errorf("%d big buffers taken while the client sent slowly (%d before), want none", n, before)
	}
	go conn.Write(body[slow:])
	r := readResponse(t, br, "POST")
	if r.code != 200 || r.header("X-Body-Sha") != sha(body) {
		t.Errorf("%s; backend got %s bytes, want 200 and all %d", r.status, r.header("X-Body-Len"), len(body))
	}
}

// TestChunkedStreamsGiveBackBigBuffers: a chunked body that comes in a
// burst and then slowly, as a stream of events after its first batch
// does, gives back the big buffers the burst took once a read brings
// little, both ways; all of it arrives.
func TestChunkedStreamsGiveBackBigBuffers(t *testing.T) {
	burst := pattern(100 << 10)
	var chunks bytes.Buffer
	smallChunks(&chunks, burst)
	events := []string{"event one\n", "event two\n"}
	want := string(burst) + strings.Join(events, "")
	// trickle sends the events to w one by one, a moment apart.
	trickle := func(w io.Writer) {
		for _, e := range events {
			time.Sleep(30 * time.Millisecond)
			fmt.Fprintf(w, "%x\r\n%s\r\n", len(e), e)
		}
	}
	// noBigBuffers checks, once the events went through, that the
	// exchange gave back what it took for the burst.
	noBigBuffers := func(t *testing.T, before int) {
		time.Sleep(100 * time.Millisecond)
		if n := bigClass.inUse(); n > before {
			t.Errorf("%d big buffers taken while the body trickled (%d before), want none", n, before)
		}
	}

	t.Run("download", func(t *testing.T) {
		trickled, done := make(chan struct{}), make(chan struct{})
		addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
			if readRequestHead(br) == "" {
				return
			}
			c.Write(append([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), chunks.Bytes()...))
			trickle(c)
			close(trickled)
			<-done
			io.WriteString(c, "0\r\n\r\n")
		})
		p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{upstream.New("c", "raw", addr)}}})
		conn := p.dial()
		before := bigClass.inUse()
		io.WriteString(conn, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
		got := make(chan string, 1)
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				got <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			got <- string(b)
		}()
		<-trickled
		noBigBuffers(t, before)
		close(done)
		if b := <-got; b != want {
			t.Errorf("body of %d bytes, want the burst and the events, %d", len(b), len(want))
		}
	})

	t.Run("upload", func(t *testing.T) {
		b := startBackend(t, "b1", http.HandlerFunc(echoHandler))
		p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
		conn := p.dial()
		before := bigClass.inUse()
		conn.Write(append([]byte("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"), chunks.Bytes()...))
		trickle(conn)
		noBigBuffers(t, before)
		io.WriteString(conn, "0\r\n\r\n")
		if r := readResponse(t, bufio.NewReader(conn), "POST"); r.header("X-Body-Sha") != sha([]byte(want)) {
			t.Errorf("backend got %s bytes, want the burst and the events, %d", r.header("X-Body-Len"), len(want))
		}
	})
}

// TestLargeBodiesBothWays: 8 MiB up and down, with a length and chunked,
// spliced and copied (through the big buffer a large body is copied
// with); a small exchange follows on the same connection, whose response
// head is read into that buffer.
func TestLargeBodiesBothWays(t *testing.T) { eachSpliceMode(t, largeBodiesBothWays) }

func largeBodiesBothWays(t *testing.T) {
	b := startBackend(t, "b1", http.HandlerFunc(echoHandler))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	client := keepAliveClient()
	const size = 8 << 20
	for _, tc := range []struct {
		name    string
		size    int
		chunked bool
	}{
		{"content-length", size, false},
		{"content-length, under the big buffer", 40 << 10, false},
		{"chunked", size, true},
		{"small after large", 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := pattern(tc.size)
			var rd io.Reader = bytes.NewReader(body)
			query := "n=" + strconv.Itoa(tc.size)
			if tc.chunked {
				rd = io.MultiReader(rd) // unknown length: the client sends chunked
				query += "&chunked=1"
			}
			req, _ := http.NewRequestWithContext(testCtx(t), "POST", "http://"+p.addr+"/?"+query, rd)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.Header.Get("X-Body-Sha") != sha(body) || resp.Header.Get("X-Body-Len") != strconv.Itoa(tc.size) {
				t.Errorf("upload: backend got %s bytes", resp.Header.Get("X-Body-Len"))
			}
			if wantTE := map[bool]string{true: "chunked", false: ""}[tc.chunked]; resp.Header.Get("X-TE") != wantTE {
				t.Errorf("upload framing %q, want %q", resp.Header.Get("X-TE"), wantTE)
			}
			if sha(got) != sha(body) {
				t.Errorf("download: got %d bytes, hash differs", len(got))
			}
		})
	}
}

func TestBodylessResponses(t *testing.T) {
	b := startBackend(t, "b1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.Header().Set("ETag", `"x"`)
			w.WriteHeader(304)
		default:
			w.Header().Set("Content-Length", "11")
			io.WriteString(w, "hello world")
		}
	}))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
	r := readResponse(t, br, "HEAD")
	if r.code != 200 || r.header("Content-Length") != "11" || r.body != "" {
		t.Errorf("HEAD: %s cl=%q body=%q", r.status, r.header("Content-Length"), r.body)
	}
	io.WriteString(conn, "GET /204 HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := readResponse(t, br, "GET"); r.code != 204 {
		t.Errorf("got %s", r.status)
	}
	io.WriteString(conn, "GET /304 HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := readResponse(t, br, "GET"); r.code != 304 || r.header("ETag") != `"x"` {
		t.Errorf("got %s etag=%q", r.status, r.header("ETag"))
	}
	// Framing stayed in step: a normal request follows.
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := readResponse(t, br, "GET"); r.body != "hello world" {
		t.Errorf("got %q", r.body)
	}
	if br.Buffered() != 0 {
		t.Errorf("%d stray bytes after the responses", br.Buffered())
	}
}

// A HEAD or 304 response that says the body a GET would get comes chunked
// keeps saying so to an HTTP/1.1 client, as it reached the proxy and as
// HAProxy forwards it (RFC 9112 §6.1: the coding overrides a length); an
// HTTP/1.0 client, which has no transfer codings, is told neither. No body
// follows, and the next exchange on the connection stays in step.
func TestBodylessChunkedResponses(t *testing.T) {
	addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			switch req.URL.Path {
			case "/head":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Test: 1\r\n\r\n")
			case "/head-with-length":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
			case "/304":
				io.WriteString(c, "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nTransfer-Encoding: chunked\r\n\r\n")
			default:
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
			}
		}
	})
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{upstream.New("web", "b1", addr)}}})
	for _, tt := range []struct {
		req        string
		te, length string // the framing fields the client gets
	}{
		{"HEAD /head HTTP/1.1", "chunked", ""},
		{"HEAD /head-with-length HTTP/1.1", "chunked", ""},
		{"GET /304 HTTP/1.1", "chunked", ""},
		{"HEAD /head HTTP/1.0", "", ""},
		{"GET /304 HTTP/1.0", "", ""},
	} {
		conn := p.dial()
		br := bufio.NewReader(conn)
		io.WriteString(conn, tt.req+"\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
		head := readRawHead(t, br)
		if te, length := head["transfer-encoding"], head["content-length"]; te != tt.te || length != tt.length {
			t.Errorf("%s: Transfer-Encoding %q, Content-Length %q; want %q, %q", tt.req, te, length, tt.te, tt.length)
		}
		io.WriteString(conn, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
		if r := readResponse(t, br, "GET"); r.body != "next" {
			t.Errorf("%s: the next response on the connection is %s %q, want the body next", tt.req, r.status, r.body)
		}
		conn.Close()
	}
}

// readRawHead reads a response head as it came, and returns its fields by
// lower-case name (the last of each name).
func readRawHead(t *testing.T, br *bufio.Reader) map[string]string {
	t.Helper()
	fields := map[string]string{}
	for i := 0; ; i++ {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading a response head: %v", err)
		}
		line = strings.TrimRight(line, "\r\n")
		switch name, value, ok := strings.Cut(line, ":"); {
		case line == "":
			return fields
		case i > 0 && ok:
			fields[strings.ToLower(name)] = strings.TrimSpace(value)
		}
	}
}

func TestHTTP10Client(t *testing.T) {
	b := startBackend(t, "b1", http.HandlerFunc(echoHandler))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})

	t.Run("close by default", func(t *testing.T) {
		conn := p.dial()
		br := bufio.NewReader(conn)
		io.WriteString(conn, "GET / HTTP/1.0\r\n\r\n")
		r := readResponse(t, br, "GET")
		if r.code != 200 || r.body != "ok" || r.header("X-Proto") != "HTTP/1.1" || r.header("X-Host") != b.ep.Addr {
			t.Errorf("got %s %q proto=%q host=%q", r.status, r.body, r.header("X-Proto"), r.header("X-Host"))
		}
		expectEOF(t, br)
	})
	t.Run("keep-alive", func(t *testing.T) {
		conn := p.dial()
		br := bufio.NewReader(conn)
		for i := 0; i < 2; i++ {
			io.WriteString(conn, "GET / HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n")
			r := readResponse(t, br, "GET")
			if r.body != "ok" || r.header("Connection") != "keep-alive" || r.header("X-Host") != "h" {
				t.Fatalf("got %q connection=%q", r.body, r.header("Connection"))
			}
		}
	})
	t.Run("chunked response becomes close-delimited", func(t *testing.T) {
		conn := p.dial()
		br := bufio.NewReader(conn)
		io.WriteString(conn, "GET /?n=40000&chunked=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		head, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if head.ContentLength != -1 || len(head.TransferEncoding) != 0 || !head.Close {
			t.Errorf("framing: cl=%d te=%v close=%v", head.ContentLength, head.TransferEncoding, head.Close)
		}
		got, err := io.ReadAll(head.Body)
		if err != nil || !bytes.Equal(got, pattern(40000)) {
			t.Errorf("body: %d bytes, err %v", len(got), err)
		}
	})
}

func TestConnectionClose(t *testing.T) {
	b := startBackend(t, "b1", nameHandler("b1"))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	r := readResponse(t, br, "GET")
	if r.body != "b1 /" || r.header("Connection") != "close" {
		t.Errorf("got %q connection=%q", r.body, r.header("Connection"))
	}
	expectEOF(t, br)
	if ci := p.info(); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED || ci.Requests != 1 {
		t.Errorf("ConnInfo = %+v", ci)
	}
	// The backend connection is pooled nonetheless.
	if got := b.ep.Conns(); got != 1 {
		t.Errorf("endpoint has %d connections, want 1 pooled", got)
	}
}

func TestPipelinedRequestsAnsweredInOrder(t *testing.T) {
	var eps []*upstream.Endpoint
	for i := 1; i <= 2; i++ {
		eps = append(eps, startBackend(t, fmt.Sprintf("b%d", i), nameHandler(fmt.Sprintf("b%d", i))).ep)
	}
	p := startProxy(t, &Config{Director: &rrDirector{eps: eps}})
	conn := p.dial()
	br := bufio.NewReader(conn)
	var all strings.Builder
	for i := 0; i < 6; i++ {
		fmt.Fprintf(&all, "GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	all.WriteString("POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
	all.WriteString("GET /last HTTP/1.1\r\nHost: x\r\n\r\n")
	io.WriteString(conn, all.String())
	for i := 0; i < 6; i++ {
		want := fmt.Sprintf("b%d /p%d", i%2+1, i)
		if r := readResponse(t, br, "GET"); r.body != want {
			t.Fatalf("response %d = %q, want %q", i, r.body, want)
		}
	}
	if r := readResponse(t, br, "POST"); r.body != "b1 /body" {
		t.Fatalf("got %q", r.body)
	}
	if r := readResponse(t, br, "GET"); r.body != "b2 /last" {
		t.Fatalf("got %q", r.body)
	}
}

type failDirector struct{}

func (failDirector) Pick(*Request) (*upstream.Endpoint, time.Duration, error) {
	return nil, 0, fmt.Errorf("cluster web: %w", ErrNoEndpoint)
}

func TestErrorResponses(t *testing.T) {
	// A port nothing listens on.
	dead := listen(t)
	deadAddr := dead.Addr().String()
	dead.Close()

	// A backend that answers garbage, and one that never answers.
	garbage := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		io.WriteString(c, "HTTP/1.1 two hundred OK\r\n\r\n")
	})
	silent := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		io.Copy(io.Discard, br)
	})

	// The silent endpoint's wait is short; the others answer at once,
	// within a wait long enough for any machine.
	for _, tc := range []struct {
		name     string
		director Director
		timeout  time.Duration // ResponseTimeout
		want     int
	}{
		{"no endpoint", failDirector{}, defaultTestTimeout, 503},
		{"connect refused", &rrDirector{eps: []*upstream.Endpoint{upstream.New("web", "dead", deadAddr)}}, defaultTestTimeout, 502},
		{"bad response", &rrDirector{eps: []*upstream.Endpoint{upstream.New("web", "garbage", garbage)}}, defaultTestTimeout, 502},
		{"response timeout", &rrDirector{eps: []*upstream.Endpoint{upstream.New("web", "silent", silent)}}, 300 * time.Millisecond, 504},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, &Config{Director: tc.director, ResponseTimeout: tc.timeout})
			conn := p.dial()
			br := bufio.NewReader(conn)
			io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			r := readResponse(t, br, "GET")
			if r.code != tc.want || r.header("Content-Type") != "text/plain; charset=utf-8" || r.body == "" {
				t.Fatalf("got %s type=%q body=%q", r.status, r.header("Content-Type"), r.body)
			}
			// The request was read in full: the connection stays usable.
			io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if r := readResponse(t, br, "GET"); r.code != tc.want {
				t.Fatalf("second request: %s", r.status)
			}
			expectEOF(t, br)
		})
	}
}

// getFromRaw sends one GET through a proxy to a rawBackend running fn and
// returns the response as its head arrived, with the proxy, the endpoint
// and the client connection.
func getFromRaw(t *testing.T, fn func(c net.Conn, br *bufio.Reader)) (*proxy, *upstream.Endpoint, net.Conn, *http.Response) {
	t.Helper()
	ep := upstream.New("web", "b1", rawBackend(t, fn))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
	conn := p.dial()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p, ep, conn, resp
}

// rawBackend serves each connection with fn and returns its address.
func rawBackend(t testing.TB, fn func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln := listen(t)
	t.Cleanup(func() { ln.Close() })
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(defaultTestTimeout))
				fn(c, bufio.NewReader(c))
			}()
		}
	}()
	return ln.Addr().String()
}

// readRequestHead reads a request head and returns it.
func readRequestHead(br *bufio.Reader) string {
	var sb strings.Builder
	for {
		line, err := br.ReadString('\n')
		sb.WriteString(line)
		if err != nil || line == "\r\n" {
			return sb.String()
		}
	}
}

func TestSmugglingAndMalformedRequestsAreRefused(t *testing.T) {
	b := startBackend(t, "b1", nameHandler("b1"))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	for _, tc := range []struct {
		name string
		req  string
		want string
	}{
		{"TE and CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"},
		{"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", "400"},
		{"differing CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", "400"},
		{"differing CL list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 5\r\n\r\nabcde", "400"},
		{"signed CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd", "400"},
		{"CL with space inside", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 0\r\n\r\nabcd", "400"},
		{"TE final not chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "400"},
		{"TE identity", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n", "400"},
		{"TE chunked, identity", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", "400"},
		{"TE gzip", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", "400"},
		{"CL list without space", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1,2\r\n\r\nab", "400"},
		{"CL negative", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", "400"},
		{"CL hex", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x4\r\n\r\nabcd", "400"},
		{"CL overflow", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", "400"},
		{"NUL in name", "GET / HTTP/1.1\r\nHost: x\r\nX-\x00A: 1\r\n\r\n", "400"},
		{"non-token name", "GET / HTTP/1.1\r\nHost: x\r\nX\"A: 1\r\n\r\n", "400"},
		{"obs-fold with tab", "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\tcontinued\r\n\r\n", "400"},
		{"obs-fold of the first field", "GET / HTTP/1.1\r\n Host: x\r\n\r\n", "400"},
		{"bare CR ending a field", "GET / HTTP/1.1\r\nHost: x\rX-A: 1\r\n\r\n", "400"},
		{"bare CR in request line", "GET /\r HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
		{"chunk size not hex", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5g\r\nhello\r\n0\r\n\r\n", "400"},
		{"chunk LF only after data", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", "400"},
		{"TE chunked twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"},
		{"TE chunked with a parameter", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked;x=1\r\n\r\n0\r\n\r\n", "400"},
		{"TE chunked with an empty parameter", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked;\r\n\r\n0\r\n\r\n", "400"},
		{"TE obfuscated", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", "400"},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"},
		{"TE gzip, chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "501"},
		{"space before colon", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", "400"},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  continued\r\n\r\n", "400"},
		{"tab before colon", "GET / HTTP/1.1\r\nHost: x\r\nX-A\t: 1\r\n\r\n", "400"},
		{"bad name char", "GET / HTTP/1.1\r\nHost: x\r\nX(A): 1\r\n\r\n", "400"},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", "400"},
		{"bare CR in value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", "400"},
		{"missing Host", "GET / HTTP/1.1\r\n\r\n", "400"},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"},
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", "400"},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nhello\r\n0\r\n\r\n", "400"},
		{"chunk size sign bit", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nhello\r\n0\r\n\r\n", "400"},
		{"chunk size with LF only", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", "400"},
		{"chunk data too long", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", "400"},
		{"chunk size space", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", "400"},
		{"negative chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", "400"},
		{"request line spaces", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
		{"HTTP/0.9", "GET /\r\n\r\n", "400"},
		// A request line no head can follow is answered at once, not
		// with a 408 once request_header_timeout passed.
		{"HTTP/0.9 line alone", "GET /\r\n", "400"},
		{"HTTP/2 version, line alone", "GET / HTTP/2.0\r\n", "505"},
		{"stray percent, line alone", "GET /a%zz HTTP/1.1\r\nHost: x\r\n", "400"},
		{"HTTP/2 version", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", "505"},
		{"bad target", "GET a/b HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
		{"stray percent in target", "GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
		{"control char in target", "GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
		{"CONNECT", "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", "501"},
		{"absolute-form port not a number", "GET http://x:8o/ HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
		{"absolute-form userinfo", "GET http://evil@x/ HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
		{"absolute-form bad percent", "GET http://x%zz/ HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
		{"Host port not a number", "GET / HTTP/1.1\r\nHost: x:8o\r\n\r\n", "400"},
		{"Host with a quote", "GET / HTTP/1.1\r\nHost: \"x\r\n\r\n", "400"},
		{"Host not ASCII", "GET / HTTP/1.1\r\nHost: b\xc3\xa4d\r\n\r\n", "400"},
		{"Host IPv6 unclosed", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", "400"},
		{"Host port without host", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", "400"},
		{"Host percent-encoded", "GET / HTTP/1.1\r\nHost: %61dmin.example\r\n\r\n", "400"},
		{"Host literal not IPv6", "GET / HTTP/1.1\r\nHost: [a]\r\n\r\n", "400"},
		{"Host literal IPv4", "GET / HTTP/1.1\r\nHost: [192.0.2.1]\r\n\r\n", "400"},
		{"Host literal with zone", "GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n", "400"},
		{"absolute-form percent-encoded host", "GET http://a%41/ HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
		{"absolute-form port without host", "GET http://:80/ HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
		{"fragment in target", "GET /index.html#.png HTTP/1.1\r\nHost: x\r\n\r\n", "400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := p.dial()
			br := bufio.NewReader(conn)
			io.WriteString(conn, tc.req)
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("no status line: %v", err)
			}
			if !strings.HasPrefix(line, "HTTP/1.1 "+tc.want+" ") {
				t.Fatalf("status line %q, want %s", line, tc.want)
			}
			// The rest is one text/plain response and the connection closes.
			rest, _ := io.ReadAll(br)
			conn.Close()
			if !bytes.Contains(rest, []byte("Connection: close\r\n")) || !bytes.Contains(rest, []byte("Content-Type: text/plain")) {
				t.Errorf("response head %q", rest)
			}
			// The record counts the refused request, and its failure.
			if ci := p.info(); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST || ci.Requests != 1 || ci.Failed != 1 {
				t.Errorf("record: closed for %v after %d requests, %d failed; want bad_request after 1, 1 failed", ci.Reason, ci.Requests, ci.Failed)
			}
		})
	}
	if got := b.ln.accepted.Load(); got != 0 {
		t.Errorf("a refused request reached the backend (%d connections)", got)
	}
}

// An absolute-form target names the host: the endpoint gets it in Host
// too (RFC 9112 §3.2.2), as HAProxy sends it, whatever Host the client
// sent, so that an endpoint reading Host serves what rules matched.
func TestAbsoluteFormSetsHost(t *testing.T) {
	addr, heads := captureBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	ep := upstream.New("web", "b1", addr)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
	for _, tc := range []struct{ req, want string }{
		{"GET http://a.example:81/p?q HTTP/1.1\r\nHost: admin.example\r\n\r\n", "\r\nHost: a.example:81\r\n"},
		{"GET http://a.example/p HTTP/1.0\r\n\r\n", "\r\nHost: a.example\r\n"},
		{"GET /p HTTP/1.1\r\nHost: b.example\r\n\r\n", "\r\nHost: b.example\r\n"},
	} {
		conn := p.dial()
		io.WriteString(conn, tc.req)
		if r := readResponse(t, bufio.NewReader(conn), "GET"); r.code != 200 {
			t.Fatalf("%q: %s", tc.req, r.status)
		}
		head := <-heads
		if !strings.Contains(head, tc.want) || strings.Count(strings.ToLower(head), "\nhost:") != 1 {
			t.Errorf("%q went out as %q, want one %q", tc.req, head, tc.want)
		}
	}
}

func TestRefusedHeadRequestGetsNoBody(t *testing.T) {
	b := startBackend(t, "b1", nameHandler("b1"))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	for _, req := range []string{
		"HEAD / HTTP/2.0\r\nHost: x\r\n\r\n",
		"HEAD / HTTP/1.1\r\nHost: x:8o\r\n\r\n",
		"\r\nHEAD / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
	} {
		conn := p.dial()
		io.WriteString(conn, req)
		got, _ := io.ReadAll(conn)
		if !bytes.HasPrefix(got, []byte("HTTP/1.1 4")) && !bytes.HasPrefix(got, []byte("HTTP/1.1 5")) ||
			!bytes.Contains(got, []byte("Content-Length: ")) || !bytes.HasSuffix(got, []byte("\r\n\r\n")) {
			t.Errorf("%q: answer %q, want an error head and no body", req, got)
		}
	}
}

func TestHeadTooLarge(t *testing.T) {
	b := startBackend(t, "b1", nameHandler("b1"))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})

	// A head of 65535 bytes, the default and the most, passes; one of
	// 65536 is answered 431.
	head := func(size int) string {
		const frame = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: \r\n\r\n"
		return strings.Replace(frame, ": \r", ": "+strings.Repeat("a", size-len(frame))+"\r", 1)
	}
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, head(65535))
	if r := readResponse(t, br, "GET"); r.code != 200 {
		t.Fatalf("65535-byte head: %s", r.status)
	}
	conn = p.dial()
	br = bufio.NewReader(conn)
	go io.WriteString(conn, head(65536))
	line, _ := br.ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 431 ") {
		t.Fatalf("65536-byte head: status line %q", line)
	}
	// Too many fields.
	conn = p.dial()
	br = bufio.NewReader(conn)
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n"+strings.Repeat("X-A: 1\r\n", 200)+"\r\n")
	line, _ = br.ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 431 ") {
		t.Fatalf("status line %q", line)
	}
}

func TestTimeoutsOnTheClientSide(t *testing.T) {
	b := startBackend(t, "b1", nameHandler("b1"))
	p := startProxy(t, &Config{
		Director:             &rrDirector{eps: []*upstream.Endpoint{b.ep}},
		RequestHeaderTimeout: 200 * time.Millisecond,
		IdleTimeout:          300 * time.Millisecond,
	})

	t.Run("partial head gets 408", func(t *testing.T) {
		conn := p.dial()
		br := bufio.NewReader(conn)
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n")
		r := readResponse(t, br, "GET")
		if r.code != 408 {
			t.Fatalf("got %s", r.status)
		}
		expectEOF(t, br)
		if ci := p.info(); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT {
			t.Errorf("reason %v", ci.Reason)
		}
	})
	t.Run("idle keep-alive closes quietly", func(t *testing.T) {
		conn := p.dial()
		br := bufio.NewReader(conn)
		start := time.Now() // the idle wait starts after the response
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if r := readResponse(t, br, "GET"); r.code != 200 {
			t.Fatalf("got %s", r.status)
		}
		expectEOF(t, br)
		if d := time.Since(start); d < 290*time.Millisecond {
			t.Errorf("closed %v after the request, before the 300ms idle timeout", d)
		}
		if ci := p.info(); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT || ci.Requests != 1 {
			t.Errorf("ConnInfo %+v", ci)
		}
	})
	t.Run("trickled head is bounded from its first byte", func(t *testing.T) {
		// Each line comes well within the timeout, the whole head does not:
		// the timeout runs from the first byte, not per read (slowloris).
		conn := p.dial()
		br := bufio.NewReader(conn)
		start := time.Now()
		go func() {
			io.WriteString(conn, "GET / HTTP/1.1\r\n")
			for i := 0; i < 20; i++ {
				time.Sleep(50 * time.Millisecond)
				if _, err := fmt.Fprintf(conn, "X-%d: 1\r\n", i); err != nil {
					return
				}
			}
		}()
		if r := readResponse(t, br, "GET"); r.code != 408 {
			t.Fatalf("got %s", r.status)
		}
		if d := time.Since(start); d < 200*time.Millisecond || d > 900*time.Millisecond {
			t.Errorf("408 after %v, want about the 200ms header timeout", d)
		}
		p.info()
	})
	t.Run("slow head within the limit", func(t *testing.T) {
		p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}, RequestHeaderTimeout: 3 * time.Second})
		conn := p.dial()
		br := bufio.NewReader(conn)
		io.WriteString(conn, "GET / HTTP/1.1\r\n")
		for i := 0; i < 3; i++ {
			time.Sleep(20 * time.Millisecond)
			fmt.Fprintf(conn, "X-%d: 1\r\n", i)
		}
		io.WriteString(conn, "Host: x\r\n\r\n")
		if r := readResponse(t, br, "GET"); r.code != 200 {
			t.Fatalf("got %s", r.status)
		}
	})
}

// A pooled connection that the backend closed while idle is retried once
// on a fresh connection, for a request without a body; a request with a body
// is never sent on a dead pooled connection.
func TestRetryOnConnectionClosedWhileIdle(t *testing.T) {
	closed := make(chan struct{}, 16)
	addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		// One exchange per connection, then close as a server's
		// keep-alive timeout would, without saying so.
		head := readRequestHead(br)
		if strings.Contains(head, "Content-Length: 4") {
			io.ReadFull(br, make([]byte, 4))
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		c.Close()
		closed <- struct{}{}
	})
	ep := upstream.New("web", "b1", addr)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
	conn := p.dial()
	br := bufio.NewReader(conn)
	for i, req := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		io.WriteString(conn, req)
		if r := readResponse(t, br, "GET"); r.code != 200 || r.body != "ok" {
			t.Fatalf("request %d: %s %q", i, r.status, r.body)
		}
		select {
		case <-closed:
		case <-time.After(defaultTestTimeout):
			t.Fatal("backend did not close")
		}
		// Let the FIN reach the proxy's pooled socket.
		waitFor(t, func() bool { return deadPooled(ep) })
	}
}

// deadPooled reports whether the endpoint's pooled connection has seen the
// backend's FIN (it peeks without consuming, then returns it to the pool).
func deadPooled(ep *upstream.Endpoint) bool {
	c, pooled, _ := ep.GetIdleSince()
	if c == nil {
		return true
	}
	defer ep.PutIdle(c, pooled)
	return !alive(c.(*net.TCPConn))
}

// waitFor polls cond until it holds or the test deadline passes.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(defaultTestTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestEndpointShutdownMidResponseEndsClientConn(t *testing.T) {
	headSent := make(chan struct{})
	p, ep, _, resp := getFromRaw(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial")
		close(headSent)
		io.Copy(io.Discard, br) // until closed
	})
	<-headSent
	buf := make([]byte, 7)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "partial" {
		t.Fatalf("got %q %v", buf, err)
	}
	ep.Shutdown()
	if n, err := io.Copy(io.Discard, resp.Body); err == nil {
		t.Fatalf("body ended cleanly after %d more bytes; want the connection cut", n)
	}
	ci := p.info()
	if ci.Reason != sluicev1.CloseReason_CLOSE_REASON_DRAINED {
		t.Errorf("reason %v, want DRAINED", ci.Reason)
	}
	if ep.Conns() != 0 || ep.Inflight() != 0 {
		t.Errorf("endpoint conns=%d inflight=%d", ep.Conns(), ep.Inflight())
	}
}

func TestEndpointShutdownBeforeResponseGets502(t *testing.T) {
	got := make(chan struct{})
	addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		close(got)
		io.Copy(io.Discard, br)
	})
	ep := upstream.New("web", "b1", addr)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
	conn := p.dial()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	<-got
	ep.Shutdown()
	r := readResponse(t, br, "GET")
	if r.code != 502 {
		t.Fatalf("got %s", r.status)
	}
}

// TestShutdownSessionsInFlight: ShutdownSessions closes the pooled and the
// busy connections to an endpoint. The request in flight gets a 502 that
// says why, and is not replayed on a fresh connection though it was sent
// on a pooled one; the endpoint takes the next request.
func TestShutdownSessionsInFlight(t *testing.T) {
	held := make(chan struct{})
	var once sync.Once
	addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		for {
			head := readRequestHead(br)
			switch {
			case head == "":
				return
			case strings.HasPrefix(head, "GET /hold "):
				once.Do(func() { close(held) })
				io.Copy(io.Discard, br) // until closed
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	ep := upstream.New("web", "b1", addr)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})
	a, b := p.dial(), p.dial()
	ra, rb := bufio.NewReader(a), bufio.NewReader(b)
	get := func(c net.Conn, br *bufio.Reader, path string) *rawResponse {
		t.Helper()
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		return readResponse(t, br, "GET")
	}
	if r := get(a, ra, "/"); r.body != "ok" {
		t.Fatalf("first request: %s %q", r.status, r.body)
	}
	// b's request takes the pooled connection and is held there; a's next
	// one opens and pools a second.
	io.WriteString(b, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
	<-held
	if r := get(a, ra, "/"); r.body != "ok" {
		t.Fatalf("second request: %s %q", r.status, r.body)
	}
	if n := ep.Conns(); n != 2 {
		t.Fatalf("%d connections to the endpoint, want 2 (one busy, one pooled)", n)
	}
	if n := ep.ShutdownSessions(); n != 2 {
		t.Errorf("ShutdownSessions closed %d connections, want 2", n)
	}
	r := readResponse(t, rb, "GET")
	if r.code != 502 || !strings.Contains(r.body, "shut down") {
		t.Errorf("held request: %s %q, want 502 saying the connections were shut down", r.status, r.body)
	}
	if r := get(b, rb, "/"); r.body != "ok" {
		t.Errorf("request after the shutdown, on the same client connection: %s %q", r.status, r.body)
	}
	if ep.Inflight() != 0 || ep.Conns() != 1 {
		t.Errorf("endpoint inflight=%d conns=%d, want 0 and the one new pooled connection", ep.Inflight(), ep.Conns())
	}
}

func TestClosingClientConnEndsServeConn(t *testing.T) {
	t.Run("ServeConn", func(t *testing.T) { testClosingClientConnEnds(t, startServeConnProxy) })
	t.Run("ServeConnAsync", func(t *testing.T) { testClosingClientConnEnds(t, startProxy) })
}

func testClosingClientConnEnds(t *testing.T, start func(testing.TB, *Config) *proxy) {
	got := make(chan struct{}, 1)
	addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		got <- struct{}{}
		io.Copy(io.Discard, br)
	})
	ep := upstream.New("web", "b1", addr)
	p := start(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})

	closeServerSide := func() time.Time {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.conns[len(p.conns)-1].Close()
		return time.Now()
	}
	t.Run("while idle", func(t *testing.T) {
		conn := p.dial()
		waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.conns) == 1 })
		closed := closeServerSide()
		ci := p.info()
		if ci.Reason != sluicev1.CloseReason_CLOSE_REASON_LISTENER_CLOSED || time.Since(closed) > time.Second {
			t.Errorf("reason %v after %v", ci.Reason, time.Since(closed))
		}
		expectEOF(t, bufio.NewReader(conn))
	})
	t.Run("while waiting for the endpoint", func(t *testing.T) {
		conn := p.dial()
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		<-got
		closed := closeServerSide()
		ci := p.info()
		if ci.Reason != sluicev1.CloseReason_CLOSE_REASON_LISTENER_CLOSED || time.Since(closed) > 3*closeCheckInterval {
			t.Errorf("reason %v after %v", ci.Reason, time.Since(closed))
		}
		if ep.Conns() != 0 || ep.Inflight() != 0 {
			t.Errorf("endpoint conns=%d inflight=%d", ep.Conns(), ep.Inflight())
		}
	})
}

func TestConnInfoCountsWireBytes(t *testing.T) {
	b := startBackend(t, "b1", http.HandlerFunc(echoHandler))
	p := startProxy(t, &Config{Listener: "l1", Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	conn := p.dial()
	counter := &countingReader{r: conn}
	br := bufio.NewReader(counter)
	sent := 0
	for _, req := range []string{
		"GET /?n=100 HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"POST /?n=200000 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	} {
		n, _ := io.WriteString(conn, req)
		sent += n
		readResponse(t, br, "POST")
	}
	conn.(*net.TCPConn).CloseWrite()
	expectEOF(t, br)
	ci := p.info()
	if ci.BytesIn != uint64(sent) || ci.BytesOut != uint64(counter.n) {
		t.Errorf("BytesIn = %d, BytesOut = %d; want %d, %d", ci.BytesIn, ci.BytesOut, sent, counter.n)
	}
	if ci.Requests != 3 || ci.Listener != "l1" || ci.Cluster != "web" || ci.Endpoint != "b1" ||
		ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED || ci.Client != conn.LocalAddr().String() {
		t.Errorf("ConnInfo = %+v", ci)
	}
	if ci.Start.IsZero() || ci.Duration <= 0 {
		t.Errorf("Start %v Duration %v", ci.Start, ci.Duration)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// An endpoint that stops reading a large upload for longer than the
// close-check interval must still receive every byte.
func TestLargeUploadToSlowEndpoint(t *testing.T) {
	b := startBackend(t, "b1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(closeCheckInterval + 300*time.Millisecond)
		echoHandler(w, r)
	}))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	body := pattern(16 << 20)
	req, _ := http.NewRequestWithContext(testCtx(t), "POST", "http://"+p.addr+"/", bytes.NewReader(body))
	resp, err := keepAliveClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Body-Sha") != sha(body) {
		t.Fatalf("backend got %s bytes, hash differs", resp.Header.Get("X-Body-Len"))
	}
}

// A large body, spliced (relay_linux.go) or copied: an endpoint that
// closes before the declared length: the client gets what was sent and
// then its connection closes, recorded as the endpoint's doing.
func TestLargeResponseEndpointCloses(t *testing.T) {
	eachSpliceMode(t, largeResponseEndpointCloses)
}

func largeResponseEndpointCloses(t *testing.T) {
	const sent = 300 << 10
	p, ep, _, resp := getFromRaw(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n")
		c.Write(pattern(sent))
		c.Close()
	})
	got, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("a body cut at %d of 1048576 bytes reached the client as complete", len(got))
	}
	if len(got) != sent || !bytes.Equal(got, pattern(sent)) {
		t.Errorf("client got %d bytes (intact: %v), want the %d sent", len(got), bytes.Equal(got, pattern(len(got))), sent)
	}
	if ci := p.info(); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED {
		t.Errorf("reason %v, want SERVER_CLOSED", ci.Reason)
	}
	if ep.Conns() != 0 || ep.Inflight() != 0 {
		t.Errorf("endpoint conns=%d inflight=%d", ep.Conns(), ep.Inflight())
	}
}

// A client that goes away in the middle of a large body, spliced or
// copied: recorded as the client's doing, and the endpoint connection is
// not pooled.
func TestLargeResponseClientCloses(t *testing.T) { eachSpliceMode(t, largeResponseClientCloses) }

func largeResponseClientCloses(t *testing.T) {
	p, ep, conn, resp := getFromRaw(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\n\r\n")
		c.Write(pattern(64 << 20)) // until the proxy closes it
	})
	if _, err := io.ReadFull(resp.Body, make([]byte, 2<<20)); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).SetLinger(0)
	conn.Close()
	if ci := p.info(); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED {
		t.Errorf("reason %v, want CLIENT_CLOSED", ci.Reason)
	}
	if ep.Conns() != 0 || ep.Inflight() != 0 {
		t.Errorf("endpoint conns=%d inflight=%d", ep.Conns(), ep.Inflight())
	}
}

// An endpoint connection dialed for a plain TCP client goes back to the
// pool with its raw socket; a client without one (TLS, or here a pipe)
// that takes it next reads and writes it the same way. Endpoints belong to
// clusters, which the node shares between, say, an HTTP and an HTTPS
// listener.
func TestPooledConnectionServesAClientWithoutRawSocket(t *testing.T) {
	b := startBackend(t, "b1", nameHandler("b1"))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	c := p.dial()
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /tcp HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := readResponse(t, br, "GET"); r.code != 200 || r.body != "b1 /tcp" {
		t.Fatalf("TCP client: %s %q, want 200 \"b1 /tcp\"", r.status, r.body)
	}

	client, server := net.Pipe()
	defer client.Close()
	go p.srv.ServeConnFrom(server, netip.MustParseAddrPort("192.0.2.1:4000"), netip.AddrPort{})
	client.SetDeadline(time.Now().Add(defaultTestTimeout))
	go io.WriteString(client, "GET /pipe HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := readResponse(t, bufio.NewReader(client), "GET"); r.code != 200 || r.body != "b1 /pipe" {
		t.Fatalf("pipe client: %s %q, want 200 \"b1 /pipe\"", r.status, r.body)
	}
	if got := b.ln.accepted.Load(); got != 1 {
		t.Errorf("backend accepted %d connections, want 1: the pipe client's request went on the pooled one", got)
	}
}
