package httpproxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/internal/splice/splicetest"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
)

// benchHead is a typical browser request head (~450 bytes).
const benchHead = "GET /static/app.js?v=42 HTTP/1.1\r\n" +
	"Host: www.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: */*\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Referer: https://www.example.com/\r\n" +
	"Connection: keep-alive\r\n" +
	"Cookie: session=0123456789abcdef; theme=dark\r\n" +
	"Sec-Fetch-Dest: script\r\n" +
	"Sec-Fetch-Mode: no-cors\r\n" +
	"Sec-Fetch-Site: same-origin\r\n" +
	"\r\n"

func BenchmarkParseRequest(b *testing.B) {
	for _, tc := range []struct{ name, head string }{
		{"wrk", "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"},
		{"browser", benchHead},
	} {
		b.Run(tc.name, func(b *testing.B) {
			head := []byte(tc.head)
			var r Request
			b.ReportAllocs()
			b.SetBytes(int64(len(head)))
			for b.Loop() {
				end, _ := findHeadEnd(head, 0)
				if err := r.parse(head[:end]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRewriteRequestHead: the head forwarded upstream, without
// forwarding headers, with the default ones, and with both styles
// extending a trusted peer's.
func BenchmarkRewriteRequestHead(b *testing.B) {
	for _, tc := range []struct {
		name    string
		on      bool
		style   ForwardedHeaders
		trusted bool
	}{
		{"none", false, ForwardNone, false},
		{"x-forwarded", true, ForwardXForwarded, false},
		{"both-trusted", true, ForwardBoth, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			head := []byte(strings.Replace(benchHead, "\r\n\r\n", "\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n", 1))
			var r Request
			end, _ := findHeadEnd(head, 0)
			if err := r.parse(head[:end]); err != nil {
				b.Fatal(err)
			}
			r.peer = netip.MustParseAddr("198.51.100.7")
			r.fwd.on, r.fwd.style, r.fwd.trusted = tc.on, tc.style, tc.trusted
			out := make([]byte, 0, wbSize)
			b.ReportAllocs()
			for b.Loop() {
				out = appendRequestHead(out[:0], &r, "10.0.0.1:80")
			}
		})
	}
}

// benchClient sends b.N keep-alive requests on one connection and reads
// each response of known size.
func benchClient(b *testing.B, addr string, respLen int) {
	benchClientRequest(b, addr, []byte("GET / HTTP/1.1\r\nHost: bench\r\n\r\n"), respLen)
}

// benchClientRequest is benchClient with a given request.
func benchClientRequest(b *testing.B, addr string, req []byte, respLen int) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, respLen)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}

const benchResponse = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n\r\nhello from backend 1\n"

// BenchmarkProxyKeepAlive is one full proxied request over loopback: client
// → proxy → pooled backend connection and back, on one client keep-alive
// connection. Compare with BenchmarkDirectKeepAlive.
// BenchmarkProxyKeepAlive: keep-alive requests through the proxy, with the
// default forwarding headers and without any.
func BenchmarkProxyKeepAlive(b *testing.B) {
	for _, tc := range []struct {
		name  string
		style ForwardedHeaders
	}{{"x-forwarded", ForwardXForwarded}, {"no-forwarding", ForwardNone}} {
		b.Run(tc.name, func(b *testing.B) {
			addr := loopback.FixedBackend(b, benchResponse)
			p := startProxy(b, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{upstream.New("web", "b1", addr)}}, Forwarded: tc.style})
			// The proxy rewrites the status line and head, which keeps the length.
			benchClient(b, p.addr, len(benchResponse))
		})
	}
}

// BenchmarkProxyKeepAliveLimits is BenchmarkProxyKeepAlive with the
// connection limits on (far enough not to end the connection), error pages
// configured and retries on: they must cost no allocation either.
func BenchmarkProxyKeepAliveLimits(b *testing.B) {
	addr := loopback.FixedBackend(b, benchResponse)
	p := startProxy(b, &Config{
		Director:                 &rrDirector{eps: []*upstream.Endpoint{upstream.New("web", "b1", addr)}},
		MaxConnectionAge:         time.Hour,
		MaxRequestsPerConnection: 1 << 30,
		ErrorPages:               benchErrorPages,
		Retries:                  DefaultRetries,
	})
	benchClient(b, p.addr, len(benchResponse))
}

var benchErrorPages = map[int]ErrorPage{
	502: {Body: []byte("<h1>bad gateway</h1>")},
	503: {ContentType: "text/plain", Body: []byte("down for maintenance\n")},
	504: {Redirect: "https://status.example.com/"},
}

// BenchmarkProxyErrorPage is a keep-alive client answered 503 by the proxy
// with a configured page.
func BenchmarkProxyErrorPage(b *testing.B) {
	p := startProxy(b, &Config{Director: &rrDirector{}, ErrorPages: benchErrorPages}) // no endpoints: 503
	req := []byte("GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
	benchClientRequest(b, p.addr, req, len(p.srv.cfg.Load().errorPage(503).bytes(1, true, false)))
}

// persistBenchDirector is cookie persistence as a Director does it
// (HAProxy's "cookie SERVERID insert indirect nocache"), without
// allocating: the request's SERVERID picks the endpoint, the cookie is
// removed from the request and the endpoint's own SERVERID Set-Cookie from
// the response, and the response gets the proxy's Set-Cookie with
// Cache-Control.
type persistBenchDirector struct {
	ep        *upstream.Endpoint
	setCookie []byte
}

var noCacheSetCookie = []byte(`no-cache="set-cookie"`)

func (d *persistBenchDirector) Pick(r *Request) (*upstream.Endpoint, time.Duration, error) {
	if v := r.Cookie("SERVERID"); v != nil && string(v) == d.ep.Name {
		r.RemoveCookie("SERVERID")
	}
	r.RemoveResponseCookie("SERVERID")
	r.AddResponseField("Set-Cookie", d.setCookie)
	r.AddResponseField("Cache-Control", noCacheSetCookie)
	d.ep.Acquire()
	return d.ep, time.Second, nil
}

const benchCookieResponse = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: SERVERID=zz; path=/\r\n" +
	"Set-Cookie: session=0123456789abcdef; HttpOnly\r\nContent-Length: 21\r\n\r\nhello from backend 1\n"

// BenchmarkCookiePersistenceHeads is the head work of one request with
// cookie persistence: parse, the Director's calls, the forwarded request
// head, then the response head parsed and rewritten for the client.
func BenchmarkCookiePersistenceHeads(b *testing.B) {
	reqHead := []byte(strings.Replace(benchHead, "Cookie: session=0123456789abcdef; theme=dark",
		"Cookie: session=0123456789abcdef; SERVERID=b1; theme=dark", 1))
	respHead := []byte(benchCookieResponse[:strings.Index(benchCookieResponse, "\r\n\r\n")+4])
	x := exchangePool.New().(*exchange) // request and response share the field table, as in the proxy
	d := &persistBenchDirector{ep: upstream.New("web", "b1", "10.0.0.1:80"), setCookie: []byte("SERVERID=b1; path=/")}
	out := make([]byte, 0, wbSize)
	b.ReportAllocs()
	for b.Loop() {
		if err := x.req.parse(reqHead); err != nil {
			b.Fatal(err)
		}
		ep, _, _ := d.Pick(&x.req)
		ep.Release()
		out = appendRequestHead(out[:0], &x.req, ep.Addr)
		if err := x.resp.parse(respHead, false); err != nil {
			b.Fatal(err)
		}
		dropSetCookies(&x.resp, &x.req.dropSetCookies)
		out = appendResponseHead(out[:0], &x.resp, &x.req, 1, true, outLength)
	}
}

// BenchmarkProxyKeepAliveCookie is BenchmarkProxyKeepAlive with cookie
// persistence by the Director (persistBenchDirector).
func BenchmarkProxyKeepAliveCookie(b *testing.B) {
	addr := loopback.FixedBackend(b, benchCookieResponse)
	ep := upstream.New("web", "b1", addr)
	p := startProxy(b, &Config{Director: &persistBenchDirector{ep: ep, setCookie: []byte("SERVERID=b1; path=/")}})
	req := []byte("GET / HTTP/1.1\r\nHost: bench\r\nCookie: session=0123456789abcdef; SERVERID=b1; theme=dark\r\n\r\n")
	benchClientRequest(b, p.addr, req, proxiedLen(b, p.addr, req))
}

// proxiedLen returns the length of the response to req through the proxy
// at addr, and checks it is what the persistence benchmark expects.
func proxiedLen(b *testing.B, addr string, req []byte) int {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.Write(req)
	cr := &countingReader{r: c}
	br := bufio.NewReader(cr)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if got := resp.Header.Values("Set-Cookie"); len(got) != 2 || got[0] != "session=0123456789abcdef; HttpOnly" || got[1] != "SERVERID=b1; path=/" {
		b.Fatalf("Set-Cookie %q", got)
	}
	if br.Buffered() != 0 {
		b.Fatal("more than one response")
	}
	return cr.n
}

func BenchmarkDirectKeepAlive(b *testing.B) {
	addr := loopback.FixedBackend(b, benchResponse)
	benchClient(b, addr, len(benchResponse))
}

// BenchmarkProxyResponseSizes measures bodies that need more than one
// write, the large one spliced and copied (eachBodyMode).
func BenchmarkProxyResponseSizes(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		resp := "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n" + string(pattern(size))
		eachBodyMode(b, size, func(b *testing.B) {
			addr := loopback.FixedBackend(b, resp)
			p := startProxy(b, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{upstream.New("web", "b1", addr)}}})
			b.SetBytes(int64(size))
			benchClient(b, p.addr, len(resp))
		})
	}
}

// BenchmarkProxyUploadSizes measures request bodies: one that fits next
// to the head in the first read, one that needs more reads (copied), and
// large ones, spliced and copied (eachBodyMode). The client writes each
// request in one go, so the proxy rarely waits for it long enough to
// watch its endpoint (sendBody).
func BenchmarkProxyUploadSizes(b *testing.B) {
	for _, size := range []int{1 << 10, 32 << 10, 256 << 10, 1 << 20} {
		eachBodyMode(b, size, func(b *testing.B) {
			addr := rawBackend(b, func(c net.Conn, br *bufio.Reader) {
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					io.WriteString(c, benchResponse)
				}
			})
			p := startProxy(b, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{upstream.New("web", "b1", addr)}}})
			req := append([]byte("POST /up HTTP/1.1\r\nHost: bench\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n"), pattern(size)...)
			b.SetBytes(int64(size))
			benchClientRequest(b, p.addr, req, len(benchResponse))
		})
	}
}

// eachBodyMode runs f as the sub-benchmark of a body of size; of a body
// large enough that spliceMin is left after a first read of up to bbSize,
// once for each of splicetest.Modes. (A 64 KiB body is spliced only when
// the first read took none of it.)
func eachBodyMode(b *testing.B, size int, f func(b *testing.B)) {
	if size < spliceMin+bbSize {
		b.Run(strconv.Itoa(size), f)
		return
	}
	for _, mode := range splicetest.Modes() {
		b.Run(strconv.Itoa(size)+"/"+mode, func(b *testing.B) {
			splicetest.Set(b, mode)
			f(b)
		})
	}
}

// BenchmarkIdleConnMemory reports what an idle keep-alive client
// connection costs after one request: goroutine stack and live heap per
// connection (the heap figure includes the in-process client's side of the
// socket, about 0.3 KiB). Each iteration opens 1000 connections. "waiting"
// serves them as ServeConn does, each waiting on its goroutine; "parked"
// as the node does (ServeConnAsync), where they park.
func BenchmarkIdleConnMemory(b *testing.B) {
	b.Run("waiting", func(b *testing.B) { benchIdleConnMemory(b, startServeConnProxy, func(int) {}) })
	b.Run("parked", func(b *testing.B) {
		if !parkingWorks() {
			b.Skip("connections do not park on this platform")
		}
		benchIdleConnMemory(b, startProxy, func(n int) { waitForParked(b, n) })
	})
}

func benchIdleConnMemory(b *testing.B, start func(testing.TB, *Config) *proxy, settled func(n int)) {
	addr := loopback.FixedBackend(b, benchResponse)
	p := start(b, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{upstream.New("web", "b1", addr)}}})
	const n = 1000
	var stack, heap float64
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		conns := make([]net.Conn, n)
		buf := make([]byte, len(benchResponse))
		for i := range conns {
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				b.Fatal(err)
			}
			conns[i] = c
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
		}
		settled(n)
		runtime.GC()
		runtime.ReadMemStats(&after)
		stack += float64(int64(after.StackInuse)-int64(before.StackInuse)) / n
		heap += float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
		for _, c := range conns {
			c.Close()
		}
		for i := 0; i < n; i++ {
			p.info()
		}
		settled(0)
	}
	b.ReportMetric(stack/float64(b.N), "stack-B/conn")
	b.ReportMetric(heap/float64(b.N), "heap-B/conn")
}
