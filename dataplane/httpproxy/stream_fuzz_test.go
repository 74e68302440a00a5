package httpproxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// streamSeeds are whole client connections: pipelined requests, bodies in
// both framings, and the shapes smuggling attempts take.
var streamSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /n HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\nHEAD /h HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 27\r\n\r\nGET /inner HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nokGET / HTTP/1.0\r\n\r\n",
	"\r\nGET http://h:1/p?q=1 HTTP/1.1\r\nHost: h:1\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /after-close HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nshort",
	"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
}

// FuzzProxyStream sends fuzzed bytes, as a client's whole connection in
// two pieces cut at split, through a live proxy served as the node serves
// it (ServeConnAsync, the raw fast path) to an endpoint that reads them
// with net/http's parser.
// What the proxy forwards must be what net/http reads from the client's
// bytes, request by request:
//   - everything the endpoint receives parses, one request after another:
//     the proxy never forwards bytes that start a request it did not mean;
//   - the endpoint's requests, in order, have the method, target and body
//     of the requests net/http reads from the client's bytes (the proxy
//     neither merges, splits nor invents requests);
//   - the client gets well-formed responses, the endpoint's answers in
//     order and none lost, and the connection ends: no hang.
func FuzzProxyStream(f *testing.F) {
	for _, s := range append(streamSeeds, requestSeeds...) {
		f.Add([]byte(s), uint16(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		ep := startRecorder(t)
		p := startParkingProxy(t, &Config{
			Director:             &rrDirector{eps: []*upstream.Endpoint{ep.ep}},
			RequestHeaderTimeout: time.Second,
			IdleTimeout:          time.Second,
			ResponseTimeout:      2 * time.Second,
		})
		c := p.dial()
		go func() {
			// In two pieces a moment apart, so that the proxy reads them
			// apart: a head, a chunk or a body cut anywhere.
			rest := data
			if s := int(split); s > 0 && s < len(data) {
				c.Write(data[:s])
				time.Sleep(time.Millisecond)
				rest = data[s:]
			}
			c.Write(rest)
			c.(*net.TCPConn).CloseWrite()
		}()
		got, err := io.ReadAll(c)
		if err != nil && !isReset(err) {
			t.Fatalf("reading the proxy's answers: %v (after %q)", err, got)
		}
		c.Close()
		p.ln.Close()
		p.srv.Close()
		p.wg.Wait()
		ep.ep.Drain() // closes the pooled connection, which ends the recorder's
		fwd := ep.wait(t)
		t.Logf("client got %q", got)

		// What the endpoint received, against what net/http reads from the
		// client's bytes.
		want, unread := readRequests(data)
		for i, r := range fwd {
			if r.err != "" {
				t.Fatalf("the endpoint could not read forwarded request %d: %s\nclient sent %q", i+1, r.err, data)
			}
			if i >= len(want) {
				t.Fatalf("request %d forwarded (%s %s), net/http reads only %d from %q", i+1, r.method, r.target, len(want), data)
			}
			w := want[i]
			// A request the proxy gave up on in its body (the client's
			// bytes ended, or went wrong further on) got only part of it.
			sameBody := bytes.Equal(r.body, w.body) || (!r.complete && bytes.HasPrefix(w.body, r.body))
			if r.method != w.method || r.target != w.target || !sameBody {
				t.Fatalf("request %d forwarded as %s %s body %q, net/http reads %s %s body %q\nclient sent %q",
					i+1, r.method, r.target, r.body, w.method, w.target, w.body, data)
			}
			if !r.complete && i != len(fwd)-1 {
				t.Fatalf("request %d forwarded without its whole body, then request %d", i+1, i+2)
			}
		}

		// What the client received: the endpoint's answers in order, none
		// lost, each well framed.
		answered := 0
		for _, r := range fwd {
			if r.complete {
				answered++
			}
		}
		br := bufio.NewReader(bytes.NewReader(got))
		seq, n := 0, 0
		for br.Buffered() > 0 || n == 0 {
			if _, err := br.Peek(1); err != nil {
				break
			}
			method := "GET"
			switch {
			case n < len(want):
				method = want[n].method
			case n == len(want) && bytes.HasPrefix(unread, []byte("HEAD ")):
				method = "HEAD" // a request the proxy refused
			}
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				t.Fatalf("answer %d does not parse: %v\nclient got %q", n+1, err, got)
			}
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("answer %d: reading its body: %v\nclient got %q", n+1, err, got)
			}
			if resp.StatusCode < 200 {
				continue // 100 Continue
			}
			n++
			if s := resp.Header.Get("X-Seq"); s != "" {
				if seq++; s != strconv.Itoa(seq) {
					t.Fatalf("answer %d is the endpoint's %s, want its %d\nclient got %q", n, s, seq, got)
				}
			}
		}
		if seq != answered {
			t.Fatalf("the endpoint answered %d requests, the client got %d of them\nclient sent %q\nclient got %q", answered, seq, data, got)
		}
	})
}

// streamRequest is a request as net/http read it, at the client's side or
// the endpoint's.
type streamRequest struct {
	method, target string
	body           []byte
	complete       bool   // the whole body arrived
	err            string // the endpoint could not parse what came
}

// readRequests reads the requests in b with net/http's parser, up to the
// first it cannot read whole; that one is in too if its head was whole,
// with the part of its body that came. Like the proxy, it skips empty
// lines before a request line (RFC 9112 §2.2), and it reads the lists in
// framing fields as the RFCs allow and net/http does not (normalHead).
// unread is what follows the last request read, from its request line.
func readRequests(b []byte) (reqs []streamRequest, unread []byte) {
	var out []streamRequest
	for {
		for len(b) > 0 && (b[0] == '\r' || b[0] == '\n') {
			b = b[1:]
		}
		head, n := normalHead(b)
		if n < 0 {
			return out, b
		}
		msg := append(head, b[n:]...)
		br := bufio.NewReader(bytes.NewReader(msg))
		req, err := http.ReadRequest(br)
		if err != nil {
			return out, b
		}
		body, err := io.ReadAll(req.Body)
		out = append(out, streamRequest{method: req.Method, target: req.RequestURI, body: body, complete: err == nil})
		if err != nil || req.Close {
			return out, nil
		}
		used := len(msg) - br.Buffered() // the head as rewritten, and the body
		b = b[n+used-len(head):]
	}
}

// normalHead returns the head at the start of b, up to its empty line,
// with the lists in its framing fields written as net/http takes them,
// and the head's length in b (-1: no whole head). Empty list elements go
// (RFC 9110 §5.6.1), and a Content-Length list becomes one field line
// per value.
func normalHead(b []byte) ([]byte, int) {
	var head []byte
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return nil, -1
		}
		line := b[i : i+j+1]
		i += j + 1
		name, value, _ := bytes.Cut(line, []byte(":"))
		cl := bytes.EqualFold(name, []byte("Content-Length"))
		if !cl && !bytes.EqualFold(name, []byte("Transfer-Encoding")) || !bytes.Contains(value, []byte(",")) {
			head = append(head, line...)
			if string(line) == "\r\n" || string(line) == "\n" {
				return head, i
			}
			continue
		}
		var values [][]byte
		for _, v := range bytes.Split(bytes.TrimRight(value, "\r\n"), []byte(",")) {
			if v = bytes.Trim(v, " \t"); len(v) > 0 {
				values = append(values, v)
			}
		}
		if !cl {
			values = [][]byte{bytes.Join(values, []byte(", "))}
		}
		for _, v := range values {
			head = append(head, name...)
			head = append(head, ": "...)
			head = append(head, v...)
			head = append(head, "\r\n"...)
		}
	}
	return nil, -1
}

// recorder is an endpoint that reads requests with net/http's parser,
// records them, and answers each whole one with its sequence number.
type recorder struct {
	ln   net.Listener
	ep   *upstream.Endpoint
	wg   sync.WaitGroup
	mu   sync.Mutex
	reqs []streamRequest
}

func startRecorder(t *testing.T) *recorder {
	r := &recorder{ln: listen(t)}
	r.ep = upstream.New("web", "rec", r.ln.Addr().String())
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := r.ln.Accept()
			if err != nil {
				return
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(defaultTestTimeout))
				r.serve(c)
			}()
		}
	}()
	t.Cleanup(func() { r.ln.Close() })
	return r
}

func (r *recorder) serve(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			if !errors.Is(err, io.EOF) && !isReset(err) {
				r.mu.Lock()
				r.reqs = append(r.reqs, streamRequest{err: err.Error()})
				r.mu.Unlock()
			}
			return
		}
		if req.Header.Get("Expect") == "100-continue" {
			// As a net/http server does when its handler reads the body.
			io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
		}
		body, err := io.ReadAll(req.Body)
		sr := streamRequest{method: req.Method, target: req.RequestURI, body: body, complete: err == nil}
		r.mu.Lock()
		r.reqs = append(r.reqs, sr)
		seq := len(r.reqs)
		r.mu.Unlock()
		if !sr.complete {
			return
		}
		answer := fmt.Sprintf("seq %d", seq)
		head := fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Seq: %d\r\nContent-Length: %d\r\n\r\n", seq, len(answer))
		if req.Method != http.MethodHead {
			head += answer
		}
		if _, err := io.WriteString(c, head); err != nil {
			return
		}
	}
}

// wait closes the listener, waits until every connection the proxy made
// ended, and returns what arrived.
func (r *recorder) wait(t *testing.T) []streamRequest {
	r.ln.Close()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(defaultTestTimeout):
		t.Fatal("the proxy's connections to the endpoint did not end")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reqs
}
