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
	"strings"
	"sync"
	"sync/atomic"
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
	"GET http://a.example/p HTTP/1.1\r\nHost: admin.example\r\n\r\nGET http://[2001:db8::1]:8080/ HTTP/1.0\r\n\r\n",
}

// smallChunked is a whole chunked body of n bytes in small chunks
// (smallChunks).
func smallChunked(n int) string {
	var b bytes.Buffer
	smallChunks(&b, bytes.Repeat([]byte("c"), n))
	return b.String() + "0\r\n\r\n"
}

// bigStreamSeeds are seeds large enough to move to the big buffers of a
// large body (bulkRead, bulkOutput; the 68 KiB buffer of an upload with a
// length), with a request pipelined behind each.
var bigStreamSeeds = []string{
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + smallChunked(25000) + "GET /after HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 40000\r\n\r\n" + strings.Repeat("l", 40000) + "GET /after HTTP/1.1\r\nHost: a\r\n\r\n",
}

// FuzzProxyStream sends fuzzed bytes, as a client's whole connection in
// two pieces cut at split, through a live proxy served as the node serves
// it (ServeConnAsync, the raw fast path) to an endpoint that reads them
// with net/http's parser.
// What the proxy forwards must be what net/http reads from the client's
// bytes, request by request:
//   - everything the endpoint receives parses, one request after another:
//     the proxy never forwards bytes that start a request it did not mean;
//   - the endpoint's requests, in order, have the method, target, host and
//     body of the requests net/http reads from the client's bytes (the proxy
//     neither merges, splits nor invents requests);
//   - the client gets well-formed responses, the endpoint's answers in
//     order and none lost, and the connection ends: no hang.
func FuzzProxyStream(f *testing.F) {
	for _, s := range append(append(streamSeeds, requestSeeds...), bigStreamSeeds...) {
		f.Add([]byte(s), uint16(len(s)/2))
	}
	rec := &recorder{}
	rig := newFuzzRig(f, rec.serve)
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		rec.reset()
		got := rig.exchange(t, func(c net.Conn) {
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
		}, func(c net.Conn) []byte {
			got, err := io.ReadAll(c)
			if err != nil && !isReset(err) {
				t.Fatalf("reading the proxy's answers: %v (after %q)", err, got)
			}
			return got
		})
		fwd := rec.requests()
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
			// An HTTP/1.0 request without a host gets the endpoint's.
			sameHost := r.host == w.host || w.host == ""
			if r.method != w.method || r.target != w.target || !sameBody || !sameHost {
				t.Fatalf("request %d forwarded as %s %s host %q body %q, net/http reads %s %s host %q body %q\nclient sent %q",
					i+1, r.method, r.target, r.host, r.body, w.method, w.target, w.host, w.body, data)
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
		for {
			if _, err := br.Peek(1); err != nil {
				break // all read
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
	host           string // as net/http reads it: the target's, else Host
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
	for {
		for len(b) > 0 && (b[0] == '\r' || b[0] == '\n') {
			b = b[1:]
		}
		head, n := normalHead(b, false)
		if n < 0 {
			return reqs, b
		}
		msg := append(head, b[n:]...)
		rd := bytes.NewReader(msg)
		br := bufio.NewReader(rd)
		req, err := http.ReadRequest(br)
		if err != nil {
			return reqs, b
		}
		body, err := io.ReadAll(req.Body)
		reqs = append(reqs, streamRequest{method: req.Method, target: req.RequestURI, host: req.Host, body: body, complete: err == nil})
		if err != nil || req.Close {
			return reqs, nil
		}
		// The head as rewritten, and the body: what neither the buffer
		// nor the reader under it (past a body larger than the buffer)
		// still holds.
		used := len(msg) - br.Buffered() - rd.Len()
		b = b[n+used-len(head):]
	}
}

// normalHead returns the head at the start of b, up to its empty line,
// with the lists in its framing fields written as net/http takes them,
// and the head's length in b (-1: no whole head). Empty list elements go
// (RFC 9110 §5.6.1), and a Content-Length list becomes one field line
// per value, each as its decimal value ("01" as "1"): the proxy takes a
// list whose values are the same number as that number and sends it on
// alone (RFC 9110 §8.6, as HAProxy does), where net/http would want the
// same digits. With noBody, Transfer-Encoding goes: the message ends with
// its head whatever that says (an answer to HEAD, 1xx, 204 or 304; RFC
// 9112 §6.3), which net/http checks anyway.
func normalHead(b []byte, noBody bool) ([]byte, int) {
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
		te := bytes.EqualFold(name, []byte("Transfer-Encoding"))
		if noBody && te {
			continue
		}
		if !cl && !te || !bytes.Contains(value, []byte(",")) {
			head = append(head, line...)
			if string(line) == "\r\n" || string(line) == "\n" {
				return head, i
			}
			continue
		}
		var values [][]byte
		for _, v := range bytes.Split(bytes.TrimRight(value, "\r\n"), []byte(",")) {
			if v = bytes.Trim(v, " \t"); len(v) > 0 {
				if cl && len(bytes.Trim(v, "0123456789")) == 0 {
					if v = bytes.TrimLeft(v, "0"); len(v) == 0 {
						v = []byte("0")
					}
				}
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

// recorder is an endpoint's connection handler that reads requests with
// net/http's parser, records them, and answers each whole one with its
// sequence number.
type recorder struct {
	mu   sync.Mutex
	reqs []streamRequest
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.reqs = nil
	r.mu.Unlock()
}

func (r *recorder) requests() []streamRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reqs
}

func (r *recorder) serve(c net.Conn) {
	br := bufio.NewReaderSize(c, 2*maxHead)
	for {
		hosts := hostFields(peekHead(br))
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
		sr := streamRequest{method: req.Method, target: req.RequestURI, host: req.Host, body: body, complete: err == nil}
		if len(hosts) != 1 || hosts[0] != req.Host {
			// The Host field must say what net/http reads as the host,
			// which is the target's for an absolute-form target.
			sr.err = fmt.Sprintf("Host fields %q for host %q", hosts, req.Host)
		}
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

// peekHead returns the head at the start of br, as far as it came,
// without reading it.
func peekHead(br *bufio.Reader) []byte {
	for n := 1; ; n = br.Buffered() + 1 {
		if _, err := br.Peek(n); err != nil {
			b, _ := br.Peek(br.Buffered())
			return b
		}
		b, _ := br.Peek(br.Buffered())
		if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
			return b[:i+4]
		}
	}
}

// hostFields returns the values of the Host fields of head.
func hostFields(head []byte) []string {
	var hosts []string
	for _, line := range bytes.Split(head, []byte("\r\n")) {
		if name, value, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(name, []byte("Host")) {
			hosts = append(hosts, string(bytes.Trim(value, " \t")))
		}
	}
	return hosts
}

// FuzzProxyResponses has an endpoint answer two requests of one client
// connection with fuzzed bytes (r1 to the first, r2 to the second, GET or
// HEAD as head1 and head2 say), through a live proxy served as the node
// serves it. Each answer the client gets is either what net/http reads
// from the endpoint's bytes for that request (status and body) or an
// error of the proxy's own (ownErrorType); never bytes of the other
// answer, which is what a proxy that reused an endpoint connection past
// an answer's end would give.
func FuzzProxyResponses(f *testing.F) {
	for _, s := range [][2]string{
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope"},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nT: 1\r\n\r\n", "HTTP/1.1 204 No Content\r\n\r\n"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nforge", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nr2"},
		{"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello", "HTTP/1.0 200 OK\r\n\r\nuntil close"},
		{"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", "HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\nConnection: close\r\n\r\nz"},
		// Large enough to move to the big buffers (bulkBuffer, bulkOutput).
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + smallChunked(25000), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nr2"},
	} {
		f.Add([]byte(s[0]), []byte(s[1]), false, true)
	}
	var answers atomic.Pointer[map[string][]byte]
	rig := newFuzzRig(f, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			a := (*answers.Load())[req.URL.Path]
			c.Write(a)
			// An answer net/http reads whole and that does not end with
			// the connection leaves it open, with whatever bytes followed.
			if w := readAnswer(a, req.Method); !w.ok || w.closes {
				// The end of the answer, for the proxy: a FIN, not the
				// reset of noTimeWait, which would come as an error.
				c.(*peekedConn).CloseWrite()
				io.Copy(io.Discard, br)
				return
			}
		}
	})
	f.Fuzz(func(t *testing.T, r1, r2 []byte, head1, head2 bool) {
		answers.Store(&map[string][]byte{"/1": r1, "/2": r2})
		rig.exchange(t, nil, func(c net.Conn) []byte {
			br := bufio.NewReader(c)
			for i, head := range []bool{head1, head2} {
				method, path := "GET", fmt.Sprintf("/%d", i+1)
				if head {
					method = "HEAD"
				}
				a := (*answers.Load())[path]
				fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: a\r\n\r\n", method, path)
				want := readAnswer(a, method)
				got, err := readClientAnswer(br, method)
				if err != nil {
					if want.ok {
						t.Fatalf("answer %d: %v; the endpoint sent %q, which net/http reads whole", i+1, err, a)
					}
					break // cut short, as the endpoint's answer was
				}
				own := got.Header.Get("Content-Type") == ownErrorType
				if !own && (!want.ok || got.StatusCode != want.status || !bytes.Equal(got.body, want.body)) {
					t.Fatalf("answer %d: the client got %d %q; the endpoint sent %q, which net/http reads as %+v",
						i+1, got.StatusCode, got.body, a, want)
				}
				if got.Close {
					break
				}
			}
			return nil
		})
	})
}

// answer is what net/http reads from an endpoint's bytes as the answer to
// one request.
type answer struct {
	ok     bool // a final answer, read whole
	status int
	body   []byte
	closes bool // the connection ends with it
}

// readAnswer reads the answer to a request with method from b, passing
// over interim (1xx) answers but 101, which no request here asked for. It
// reads framing lists as readRequests does (normalHead).
func readAnswer(b []byte, method string) answer {
	for {
		noBody := method == "HEAD"
		if len(b) > 12 && b[8] == ' ' {
			code := string(b[9:12])
			noBody = noBody || code[0] == '1' || code == "204" || code == "304"
		}
		head, n := normalHead(b, noBody)
		if n < 0 {
			return answer{}
		}
		msg := append(head, b[n:]...)
		br := bufio.NewReader(bytes.NewReader(msg))
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil || resp.StatusCode == http.StatusSwitchingProtocols {
			return answer{}
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return answer{}
		}
		if resp.StatusCode >= 200 {
			return answer{ok: true, status: resp.StatusCode, body: body,
				closes: resp.Close || (resp.ContentLength < 0 && resp.TransferEncoding == nil && method != "HEAD" &&
					resp.StatusCode != 204 && resp.StatusCode != 304)}
		}
		b = b[n+len(msg)-br.Buffered()-len(head):]
	}
}

// clientAnswer is an answer the client read, with its body.
type clientAnswer struct {
	*http.Response
	body []byte
}

// readClientAnswer reads the final answer to a request with method.
func readClientAnswer(br *bufio.Reader, method string) (clientAnswer, error) {
	for {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return clientAnswer{}, err
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return clientAnswer{}, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return clientAnswer{resp, body}, nil
		}
	}
}

// fuzzRig is a proxy served as the node serves it (ServeConnAsync, the raw
// path) in front of an endpoint whose connections handle serves, kept for
// all the inputs of a fuzz worker: new listeners for each input would run
// the ports out, as the connections each input leaves in TIME_WAIT pin
// them.
type fuzzRig struct {
	p       *proxy
	dir     *swapDirector
	addr    string
	active  atomic.Int64  // the endpoint's open connections
	settled chan struct{} // settle's connection was accepted
}

// swapDirector sends every request to its current endpoint.
type swapDirector struct {
	ep atomic.Pointer[upstream.Endpoint]
}

func (d *swapDirector) Pick(*Request) (*upstream.Endpoint, time.Duration, error) {
	ep := d.ep.Load()
	ep.Acquire()
	return ep, time.Second, nil
}

func newFuzzRig(f *testing.F, handle func(net.Conn)) *fuzzRig {
	ln := listen(f)
	rig := &fuzzRig{dir: &swapDirector{}, addr: ln.Addr().String(), settled: make(chan struct{}, 1)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			rig.active.Add(1)
			go func() {
				defer rig.active.Add(-1)
				noTimeWait(c)
				defer c.Close()
				c.SetDeadline(time.Now().Add(defaultTestTimeout))
				br := bufio.NewReader(c)
				if b, _ := br.Peek(len(settleMark)); string(b) == settleMark {
					rig.settled <- struct{}{}
					return
				}
				handle(&peekedConn{c.(*net.TCPConn), br})
			}()
		}
	}()
	f.Cleanup(func() { ln.Close() })
	own := ErrorPage{ContentType: ownErrorType, Body: []byte("the proxy's\n")}
	rig.p = startProxy(f, &Config{
		Director:             rig.dir,
		RequestHeaderTimeout: time.Second,
		IdleTimeout:          time.Second,
		ResponseTimeout:      time.Second,
		ErrorPages:           map[int]ErrorPage{502: own, 503: own, 504: own},
	})
	return rig
}

// exchange runs one input: a new endpoint (an empty pool), a client
// connection that send writes to, in its own goroutine when not nil, and
// that read reads; then it waits until the proxy ended the client's
// connection and every connection to the endpoint ended.
func (rig *fuzzRig) exchange(t *testing.T, send func(net.Conn), read func(net.Conn) []byte) []byte {
	ep := upstream.New("web", "fuzz", rig.addr)
	rig.dir.ep.Store(ep)
	c, err := net.DialTimeout("tcp", rig.p.addr, defaultTestTimeout)
	if err != nil {
		t.Fatal(err)
	}
	noTimeWait(c)
	c.SetDeadline(time.Now().Add(defaultTestTimeout))
	// What an input that failed may have left.
	for len(rig.p.infos) > 0 {
		<-rig.p.infos
	}
	select {
	case <-rig.settled:
	default:
	}
	sent := make(chan struct{})
	if send != nil {
		go func() {
			defer close(sent)
			send(c)
		}()
	} else {
		close(sent)
	}
	got := read(c)
	c.Close()
	<-sent // the input's bytes are the fuzzer's again
	select {
	case <-rig.p.infos:
	case <-time.After(defaultTestTimeout):
		t.Fatal("the proxy did not end the client's connection")
	}
	ep.Drain() // closes the pooled connections
	rig.settle(t)
	return got
}

// ownErrorType is the content type of the rig's proxy's own 502, 503 and
// 504, which no endpoint's bytes are likely to hold.
const ownErrorType = "text/x-sluice-fuzz-own"

// settleMark starts the connection settle makes.
const settleMark = "SETTLE\n"

// settle waits until every connection the proxy made to the endpoint
// ended, those still in the listener's queue too: one the proxy made and
// closed before the accept loop took it would otherwise be served with
// the next input. A connection of its own, queued after them (the queue
// is first in, first out), tells when the loop has taken them all.
func (rig *fuzzRig) settle(t *testing.T) {
	c, err := net.DialTimeout("tcp", rig.addr, defaultTestTimeout)
	if err != nil {
		t.Fatal(err)
	}
	noTimeWait(c)
	c.Write([]byte(settleMark))
	select {
	case <-rig.settled:
	case <-time.After(defaultTestTimeout):
		t.Fatal("the endpoint's accept loop did not take its connections")
	}
	c.Close()
	for deadline := time.Now().Add(defaultTestTimeout); rig.active.Load() > 0; time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			t.Fatal("the proxy's connections to the endpoint did not end")
		}
	}
}

// peekedConn is a connection whose first bytes a bufio.Reader holds.
type peekedConn struct {
	*net.TCPConn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// noTimeWait has c reset when closed, not linger in TIME_WAIT, which also
// ends its peer's: a fuzz target makes connections by the thousand a
// second, and TIME_WAIT would run the ports out.
func noTimeWait(c net.Conn) {
	c.(*net.TCPConn).SetLinger(0)
}
