package accesslog

import (
	"encoding/json"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/internal/syncbuf"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// syncBuffer is the buffer the writer goroutine and the test share, read
// as JSON lines.
type syncBuffer struct{ syncbuf.Buffer }

func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// TestLines: an HTTP request and a TCP session each make one JSON line
// with their fields; what the request's buffers held is copied, so
// reusing them after Log does not change the line.
func TestLines(t *testing.T) {
	var out syncBuffer
	l, err := New(&out, Options{Node: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	buf := []byte("GETexample.com/a?b=c")
	web := meter.NewCluster("web")
	l.Log("public", &meter.Exchange{
		Start: start, Client: netip.MustParseAddrPort("127.0.0.1:5555"), Proto: meter.ProtoHTTP11,
		Method: buf[:3], Host: buf[3:14], Path: buf[14:], Status: 200, Cluster: web, Endpoint: "a",
		BytesIn: 80, BytesOut: 120, Connect: time.Millisecond, FirstByte: 3 * time.Millisecond, Total: 4 * time.Millisecond,
		Retries: 1,
	})
	copy(buf, "PUTxxxxxxxxxxxxxxxxx")
	l.Log("db", &meter.Exchange{
		Start: start, Client: netip.MustParseAddrPort("127.0.0.1:6666"), Proto: meter.ProtoTCP,
		Cluster: web, Endpoint: "b", BytesIn: 5, BytesOut: 7, Total: time.Second,
		Cause: sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED,
	})
	l.Close()
	lines := out.lines(t)
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	wantHTTP := map[string]any{
		"time": "2026-01-02T03:04:05.004Z", "level": "INFO", "msg": "request", "node": "node-1", "listener": "public",
		"client": "127.0.0.1:5555", "proto": "HTTP/1.1", "method": "GET", "host": "example.com", "path": "/a?b=c",
		"status": 200.0, "cluster": "web", "endpoint": "a", "bytes_in": 80.0, "bytes_out": 120.0,
		"connect_seconds": 0.001, "first_byte_seconds": 0.003, "total_seconds": 0.004, "retries": 1.0,
	}
	wantTCP := map[string]any{
		"time": "2026-01-02T03:04:06Z", "level": "INFO", "msg": "session", "node": "node-1", "listener": "db",
		"client": "127.0.0.1:6666", "proto": "TCP", "cluster": "web", "endpoint": "b", "bytes_in": 5.0, "bytes_out": 7.0,
		"total_seconds": 1.0, "retries": 0.0, "cause": "server_closed",
	}
	for i, want := range []map[string]any{wantHTTP, wantTCP} {
		got := lines[i]
		for k, v := range want {
			if got[k] != v {
				t.Errorf("line %d: %s = %v, want %v", i, k, got[k], v)
			}
		}
		if len(got) != len(want) {
			t.Errorf("line %d has %d fields, want %d: %v", i, len(got), len(want), got)
		}
	}
}

// TestSample: a ratio of 0.25 samples about a quarter; 1 samples all.
func TestSample(t *testing.T) {
	l, err := New(&syncBuffer{}, Options{Sample: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const n = 20000
	got := 0
	for range n {
		if l.Sample() {
			got++
		}
	}
	// Binomial(20000, 0.25): sd ≈ 61; 6 sd either way fails one run in
	// about 5e8.
	if got < 4634 || got > 5366 {
		t.Errorf("sampled %d of %d at 0.25, want about %d", got, n, n/4)
	}
	all, _ := New(&syncBuffer{}, Options{})
	defer all.Close()
	for range 1000 {
		if !all.Sample() {
			t.Fatal("ratio 1 skipped a line")
		}
	}
}

func TestBadSample(t *testing.T) {
	for _, r := range []float64{-0.5, 1.5} {
		if _, err := New(&syncBuffer{}, Options{Sample: r}); err == nil {
			t.Errorf("sample %v accepted", r)
		}
	}
}

// blockedWriter blocks every write until release is closed; stuck is
// closed when the first write began.
type blockedWriter struct {
	syncBuffer
	stuck, release chan struct{}
	once           sync.Once
}

func (w *blockedWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.stuck) })
	<-w.release
	return w.syncBuffer.Write(p)
}

// TestBlockedWriter: with the writer stuck, Log neither blocks nor loses
// count: what does not fit the queue is dropped and counted, and once the
// writer moves again every line that was kept is written.
func TestBlockedWriter(t *testing.T) {
	w := &blockedWriter{stuck: make(chan struct{}), release: make(chan struct{})}
	l, err := New(w, Options{Queue: 8})
	if err != nil {
		t.Fatal(err)
	}
	// One line, written within WriteEvery, gets the writer stuck in Write.
	l.Log("public", &meter.Exchange{Proto: meter.ProtoHTTP11, Status: 200})
	<-w.stuck
	const n = 1000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			l.Log("public", &meter.Exchange{Proto: meter.ProtoHTTP11, Status: 200})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Log blocked on a stuck writer")
	}
	if got := l.Dropped(); got != n-8 {
		t.Errorf("dropped %d of %d with a stuck writer and a queue of 8, want %d", got, n, n-8)
	}
	close(w.release)
	l.Close()
	if got := len(w.lines(t)); got != 1+8 {
		t.Errorf("%d lines written once the writer moved, want the first and the 8 queued", got)
	}
}

// BenchmarkLog is the request path's cost of a sampled line: copy and
// queue, no allocation once warm. The writer formats off that path.
func BenchmarkLog(b *testing.B) {
	var out syncBuffer
	l, _ := New(&out, Options{Queue: 1 << 16})
	defer l.Close()
	buf := []byte("GETexample.com/index.html")
	x := &meter.Exchange{Proto: meter.ProtoHTTP11, Method: buf[:3], Host: buf[3:14], Path: buf[14:], Status: 200, Cluster: meter.NewCluster("web"), Endpoint: "a"}
	b.ReportAllocs()
	for b.Loop() {
		l.Log("public", x)
	}
}
