package httpproxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/proxyproto"
	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// defaultTestTimeout bounds every wait of a test.
const defaultTestTimeout = 10 * time.Second

// rrDirector balances round robin over fixed endpoints.
type rrDirector struct {
	eps []*upstream.Endpoint
	n   atomic.Uint64
}

func (d *rrDirector) Pick(*Request) (*upstream.Endpoint, time.Duration, error) {
	if len(d.eps) == 0 {
		return nil, 0, ErrNoEndpoint
	}
	ep := d.eps[(d.n.Add(1)-1)%uint64(len(d.eps))]
	ep.Acquire()
	return ep, time.Second, nil
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// backend is a net/http server on loopback that counts its connections.
type backend struct {
	ln  *countingListener
	srv *http.Server
	ep  *upstream.Endpoint
}

func startBackend(t testing.TB, name string, h http.Handler) *backend {
	t.Helper()
	ln := &countingListener{Listener: listen(t)}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &backend{ln: ln, srv: srv, ep: upstream.New("web", name, ln.Addr().String())}
}

// proxy is a Server behind a loopback listener.
type proxy struct {
	t     testing.TB
	srv   *Server
	ln    *countingListener
	addr  string
	infos chan *ConnInfo

	mu    sync.Mutex
	conns []net.Conn // server side of accepted client connections
	wg    sync.WaitGroup
}

// startProxy serves cfg behind a loopback listener as the node does, with
// ServeConnAsync: idle connections park (park.go), and keep-alive
// requests are served from inside the idle wait (inline.go).
func startProxy(t testing.TB, cfg *Config) *proxy {
	t.Helper()
	return startProxyAs(t, cfg, true, nil)
}

// startServeConnProxy is startProxy serving with ServeConn: each
// connection waits on its own goroutine and is served on a worker.
func startServeConnProxy(t testing.TB, cfg *Config) *proxy {
	t.Helper()
	return startProxyAs(t, cfg, false, nil)
}

// serveModes are the two ways a Server serves connections, for the tests
// that run under both.
var serveModes = []struct {
	name  string
	start func(testing.TB, *Config) *proxy
}{{"ServeConn", startServeConnProxy}, {"ServeConnAsync", startProxy}}

// startProxyAs starts the proxy of startProxy (async) or
// startServeConnProxy; onRecord, if not nil, sees each connection's record
// as the server makes it, before p.info can.
func startProxyAs(t testing.TB, cfg *Config, async bool, onRecord func(*ConnInfo)) *proxy {
	t.Helper()
	return startProxyWith(t, cfg, async, onRecord, nil)
}

// startProxyWith is startProxyAs, with set, if not nil, called on the
// server before it serves (SetHTTP2).
func startProxyWith(t testing.TB, cfg *Config, async bool, onRecord func(*ConnInfo), set func(*Server)) *proxy {
	t.Helper()
	p := &proxy{t: t, ln: &countingListener{Listener: listen(t)}, infos: make(chan *ConnInfo, 1024)}
	p.addr = p.ln.Addr().String()
	p.srv = NewServer(cfg, func(ci *ConnInfo) {
		if onRecord != nil {
			onRecord(ci)
		}
		p.infos <- ci
	})
	if set != nil {
		set(p.srv)
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := p.ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			p.wg.Add(1)
			if async {
				// As the node does: paced, counted until set up.
				peer, _ := proxyproto.Addrs(c)
				p.srv.Go(func(setUp func()) { p.srv.ServeConnAsync(c, peer, netip.AddrPort{}, setUp, p.wg.Done) })
				continue
			}
			go func() {
				defer p.wg.Done()
				p.srv.ServeConn(c)
			}()
		}
	}()
	t.Cleanup(func() {
		p.ln.Close()
		if async {
			p.srv.Close()
		}
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		done := make(chan struct{})
		go func() { p.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(defaultTestTimeout):
			t.Errorf("ServeConn goroutines did not end")
		}
	})
	return p
}

// info waits for the next ConnInfo.
func (p *proxy) info() *ConnInfo {
	p.t.Helper()
	select {
	case ci := <-p.infos:
		return ci
	case <-time.After(defaultTestTimeout):
		p.t.Fatal("no ConnInfo reported")
		return nil
	}
}

// dial opens a raw client connection with a deadline.
func (p *proxy) dial() net.Conn {
	p.t.Helper()
	c, err := net.DialTimeout("tcp", p.addr, defaultTestTimeout)
	if err != nil {
		p.t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(defaultTestTimeout))
	p.t.Cleanup(func() { c.Close() })
	return c
}

// rawResponse is a response read off the wire by readResponse.
type rawResponse struct {
	status  string // status line without CRLF
	code    int
	headers map[string][]string // lower-case names
	body    string
	chunked bool
	trailer http.Header // of a chunked body
}

func (r *rawResponse) header(name string) string {
	if v := r.headers[strings.ToLower(name)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// get sends one GET on c and checks that b1 answered it, on a connection
// kept open.
func get(t *testing.T, c net.Conn, br *bufio.Reader, path string) {
	t.Helper()
	getBody(t, c, br, path, "b1 "+path)
}

// getBody sends one GET on c and checks the answer: 200 with body want, on
// a connection kept open.
func getBody(t testing.TB, c net.Conn, br *bufio.Reader, path, want string) {
	t.Helper()
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := readResponse(t, br, "GET"); r.code != 200 || r.body != want || closes(r) {
		t.Fatalf("GET %s: %s %q close=%v, want 200 %q, kept open", path, r.status, r.body, closes(r), want)
	}
}

// readResponse reads one response with net/http's parser, which also
// checks that what the proxy wrote is well-framed HTTP/1.1.
func readResponse(t testing.TB, br *bufio.Reader, method string) *rawResponse {
	t.Helper()
	req, _ := http.NewRequest(method, "http://x/", nil)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading response body: %v", err)
	}
	r := &rawResponse{status: resp.Proto + " " + resp.Status, code: resp.StatusCode, headers: map[string][]string{}, body: string(body), trailer: resp.Trailer}
	for k, v := range resp.Header {
		r.headers[strings.ToLower(k)] = v
	}
	for _, te := range resp.TransferEncoding {
		if te == "chunked" {
			r.chunked = true
		}
	}
	if resp.Close {
		r.headers["connection"] = append(r.headers["connection"], "close")
	}
	return r
}

// expectEOF asserts the peer closes the connection with nothing more sent.
func expectEOF(t testing.TB, br *bufio.Reader) {
	t.Helper()
	b, err := br.ReadByte()
	if err == nil {
		rest, _ := br.Peek(br.Buffered())
		t.Fatalf("expected the connection closed, got %q", append([]byte{b}, rest...))
	}
	if !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("expected EOF, got %v", err)
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && strings.Contains(ne.Err.Error(), "reset")
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	t.Cleanup(cancel)
	return ctx
}

// keepAliveClient is a net/http client whose connections go through addr.
func keepAliveClient() *http.Client {
	return &http.Client{
		Timeout: defaultTestTimeout,
		Transport: &http.Transport{
			MaxIdleConnsPerHost: 1,
			MaxConnsPerHost:     1,
			DisableCompression:  true,
		},
	}
}

// waitForParked waits until n connections are parked.
func waitForParked(t testing.TB, n int) {
	t.Helper()
	waitCount(t, "connections parked", parkedCount, n)
}

// waitCount polls count until it returns want, and fails the test with
// what it returned last once the test deadline passed.
func waitCount(t testing.TB, what string, count func() int, want int) {
	t.Helper()
	deadline := time.Now().Add(defaultTestTimeout)
	for {
		got := count()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s, want %d", got, what, want)
		}
		time.Sleep(time.Millisecond)
	}
}
