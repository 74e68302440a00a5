package httpproxy

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"strconv"
	"testing"

	"github.com/sluice-lb/sluice/dataplane/upstream"
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

func BenchmarkRewriteRequestHead(b *testing.B) {
	head := []byte(benchHead)
	var r Request
	end, _ := findHeadEnd(head, 0)
	if err := r.parse(head[:end]); err != nil {
		b.Fatal(err)
	}
	out := make([]byte, 0, wbSize)
	b.ReportAllocs()
	for b.Loop() {
		out = appendRequestHead(out[:0], &r, "10.0.0.1:80")
	}
}

// fixedBackend answers every request head on a connection with resp,
// without allocating; it is the backend of the loopback benchmarks.
func fixedBackend(b testing.TB, resp string) string {
	ln := listen(b)
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 16<<10)
				out := []byte(resp)
				n := 0
				for {
					m, err := c.Read(buf[n:])
					if err != nil {
						return
					}
					n += m
					for {
						i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						if _, err := c.Write(out); err != nil {
							return
						}
						n = copy(buf, buf[i+4:n])
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// benchClient sends b.N keep-alive requests on one connection and reads
// each response of known size.
func benchClient(b *testing.B, addr string, respLen int) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
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
func BenchmarkProxyKeepAlive(b *testing.B) {
	addr := fixedBackend(b, benchResponse)
	p := startProxy(b, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{upstream.New("web", "b1", addr)}}})
	// The proxy rewrites the status line and head, which keeps the length.
	benchClient(b, p.addr, len(benchResponse))
}

func BenchmarkDirectKeepAlive(b *testing.B) {
	addr := fixedBackend(b, benchResponse)
	benchClient(b, addr, len(benchResponse))
}

// BenchmarkProxyResponseSizes measures bodies that need more than one write.
func BenchmarkProxyResponseSizes(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			resp := "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n" + string(pattern(size))
			addr := fixedBackend(b, resp)
			p := startProxy(b, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{upstream.New("web", "b1", addr)}}})
			b.SetBytes(int64(size))
			benchClient(b, p.addr, len(resp))
		})
	}
}

// BenchmarkIdleConnMemory reports what an idle keep-alive client
// connection costs after one request: goroutine stack and live heap per
// connection (the heap figure includes the in-process client's side of the
// socket, about 0.3 KiB). Each iteration opens 1000 connections.
func BenchmarkIdleConnMemory(b *testing.B) {
	addr := fixedBackend(b, benchResponse)
	p := startProxy(b, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{upstream.New("web", "b1", addr)}}})
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
		runtime.GC()
		runtime.ReadMemStats(&after)
		stack += float64(after.StackInuse-before.StackInuse) / n
		heap += float64(after.HeapAlloc-before.HeapAlloc) / n
		for _, c := range conns {
			c.Close()
		}
		for i := 0; i < n; i++ {
			p.info()
		}
	}
	b.ReportMetric(stack/float64(b.N), "stack-B/conn")
	b.ReportMetric(heap/float64(b.N), "heap-B/conn")
}
