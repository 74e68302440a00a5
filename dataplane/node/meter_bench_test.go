package node

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/accesslog"
	"github.com/sluice-lb/sluice/internal/loopback"
	"github.com/sluice-lb/sluice/snapshot"
)

// BenchmarkHTTPMetered is the cost of the listener and cluster counters
// and of the access log (every request, to a file): requests over
// keep-alive connections through two HTTP listeners of one node to the
// same backend, one metered and logged, one with its meter taken out of
// its proxy configuration (neither counted nor logged). They take turns,
// 500 requests at a time, so that both see the same machine; req/s is
// reported for each (on-req/s, off-req/s) and as their ratio.
func BenchmarkHTTPMetered(b *testing.B) {
	resp := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n\r\nhello from backend 1\n"
	be := loopback.FixedBackend(b, resp)
	req := []byte("GET /static/app.js?v=42 HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\nAccept: */*\r\n\r\n")
	f, err := os.Create(filepath.Join(b.TempDir(), "access.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	log, err := accesslog.New(f, accesslog.Options{Node: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	n := New(Options{AccessLog: log, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer n.Close()
	on, off := loopback.FreeAddr(b), loopback.FreeAddr(b)
	snap, err := snapshot.Parse(fmt.Appendf(nil, `
clusters: [{ name: web, endpoints: [{ name: e, address: %q }] }]
listeners:
  - { name: on, address: %q, protocol: HTTP, default_cluster: web }
  - { name: off, address: %q, protocol: HTTP, default_cluster: web }
`, be, on, off), "")
	if err != nil {
		b.Fatal(err)
	}
	if err := n.Apply("1", snap); err != nil {
		b.Fatal(err)
	}
	srv := n.listeners[off].gen.Load().http
	unmetered := *srv.Config()
	unmetered.Meter = nil
	srv.SetConfig(&unmetered)

	var conns [2]net.Conn
	for i, addr := range []string{on, off} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	buf := make([]byte, len(resp))
	var spent [2]time.Duration
	var done [2]int
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		side := i / 500 % 2
		start := time.Now()
		if _, err := conns[side].Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(conns[side], buf); err != nil {
			b.Fatal(err)
		}
		spent[side] += time.Since(start)
		done[side]++
	}
	if string(buf) != resp {
		b.Fatalf("response %q", buf)
	}
	if done[1] == 0 {
		return // too few iterations to compare
	}
	onRate, offRate := float64(done[0])/spent[0].Seconds(), float64(done[1])/spent[1].Seconds()
	b.ReportMetric(onRate, "on-req/s")
	b.ReportMetric(offRate, "off-req/s")
	b.ReportMetric(onRate/offRate, "on/off")
}
