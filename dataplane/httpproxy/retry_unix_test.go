//go:build unix

package httpproxy

import (
	"bufio"
	"io"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
)

// TestConnectTimeoutIsRetried: an endpoint that does not answer the
// connect within the Director's connect timeout is given up for another,
// and the wait for the response starts with the connect that worked.
func TestConnectTimeoutIsRetried(t *testing.T) {
	live := startBackend(t, "live", &bodyRecorder{name: "live"})
	silent := upstream.New("web", "silent", loopback.UnresponsiveAddr(t))
	// A ResponseTimeout long enough for a busy machine's endpoint to
	// answer within it, and a connect timeout longer still.
	const connectTimeout = 2500 * time.Millisecond
	d := &skipDirector{eps: []*upstream.Endpoint{silent, live.ep}, timeout: connectTimeout}
	// A ResponseTimeout shorter than the failed connect: it must not run
	// from before it.
	p := startProxy(t, &Config{Director: d, Retries: 1, ResponseTimeout: 2 * time.Second})
	c := p.dial()
	start := time.Now()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	r := readResponse(t, bufio.NewReader(c), "GET")
	took := time.Since(start)
	if r.code != 200 || r.body != "live" {
		t.Errorf("got %d %q, want 200 live", r.code, r.body)
	}
	// Short of DefaultConnectTimeout: the Director's timeout is the one.
	if took < connectTimeout || took > connectTimeout+1500*time.Millisecond {
		t.Errorf("took %v, want about the %v connect timeout", took, connectTimeout)
	}
	if ci := p.info(); ci.Retries != 1 || ci.Endpoint != "live" {
		t.Errorf("ConnInfo: %d retries, endpoint %q; want 1, live", ci.Retries, ci.Endpoint)
	}
	if silent.Inflight() != 0 || live.ep.Inflight() != 0 || silent.Conns() != 0 {
		t.Errorf("inflight silent %d live %d, silent conns %d; want 0 0 0", silent.Inflight(), live.ep.Inflight(), silent.Conns())
	}
}
