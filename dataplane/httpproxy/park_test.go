//go:build linux

package httpproxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/internal/pace"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// A keep-alive connection idle longer than parkAfter parks: it then has no
// goroutine of its own, and its next request is served on the same
// connection as if it had waited. A connection that has not sent its
// first request parks too.
func TestParkedConnectionServesNextRequest(t *testing.T) {
	b := startBackend(t, "b1", nameHandler("b1"))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	c := p.dial()
	br := bufio.NewReader(c)
	get(t, c, br, "/1")
	fresh := p.dial()
	fbr := bufio.NewReader(fresh)
	waitForParked(t, 2)
	for i := range 3 {
		get(t, c, br, "/again")
		get(t, fresh, fbr, "/first")
		if i < 2 {
			waitForParked(t, 2)
		}
	}
	c.Close()
	fresh.Close()
	for range 2 {
		if ci := p.info(); ci.Requests != 4 && ci.Requests != 3 || ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED {
			t.Errorf("ConnInfo: %d requests, reason %v; want 3 or 4 and CLIENT_CLOSED", ci.Requests, ci.Reason)
		}
	}
	waitForParked(t, 0)
}

// Many idle connections park with no goroutine each.
func TestManyParkedConnectionsHoldNoGoroutines(t *testing.T) {
	b := startBackend(t, "b1", nameHandler("b1"))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	// One connection first, for the goroutines that stay: the parker's,
	// the backend's side of the pooled connection.
	first := p.dial()
	get(t, first, bufio.NewReader(first), "/")
	waitForParked(t, 1)
	first.Close()
	p.info()
	waitForParked(t, 0)
	before := runtime.NumGoroutine()
	const n = 200
	conns := make([]net.Conn, n)
	readers := make([]*bufio.Reader, n)
	for i := range conns {
		conns[i] = p.dial()
		readers[i] = bufio.NewReader(conns[i])
		get(t, conns[i], readers[i], "/")
	}
	waitForParked(t, n)
	if g := runtime.NumGoroutine(); g > before+20 {
		t.Errorf("%d goroutines with %d parked connections, %d before them", g, n, before)
	}
	for i := range conns {
		get(t, conns[i], readers[i], "/")
		conns[i].Close()
	}
	for range n {
		p.info()
	}
	waitForParked(t, 0)
}

// A parked connection ends at its deadline, as a waiting one does: quietly,
// recorded as a client timeout (IdleTimeout) or as having reached its
// MaxConnectionAge.
func TestParkedConnectionTimesOut(t *testing.T) {
	b := startBackend(t, "b1", nameHandler("b1"))
	for _, tc := range []struct {
		name   string
		cfg    Config
		after  time.Duration
		reason sluicev1.CloseReason
	}{
		{"idle", Config{IdleTimeout: 600 * time.Millisecond}, 600 * time.Millisecond, sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT},
		{"age", Config{MaxConnectionAge: 700 * time.Millisecond}, 700 * time.Millisecond, closeMaxAge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Director = &rrDirector{eps: []*upstream.Endpoint{b.ep}}
			p := startProxy(t, &cfg)
			// The deadline runs from accept (the age) or from the
			// response (IdleTimeout): from after start, and from about
			// answered, or later by what a busy machine delays the proxy.
			start := time.Now()
			c := p.dial()
			br := bufio.NewReader(c)
			get(t, c, br, "/")
			answered := time.Now()
			waitForParked(t, 1)
			c.SetReadDeadline(time.Now().Add(defaultTestTimeout))
			expectEOF(t, br)
			if d, late := time.Since(start), time.Since(answered); d < tc.after-50*time.Millisecond || late > tc.after+time.Second {
				t.Errorf("closed %v after the dial, %v after the answer, want about %v", d, late, tc.after)
			}
			if ci := p.info(); ci.Reason != tc.reason || ci.Requests != 1 {
				t.Errorf("ConnInfo: reason %v, %d requests; want %v, 1", ci.Reason, ci.Requests, tc.reason)
			}
			waitForParked(t, 0)
		})
	}
}

// Drain closes parked connections at once, as idle ones; Close closes
// them as the listener's.
func TestParkedConnectionsDrainAndClose(t *testing.T) {
	b := startBackend(t, "b1", nameHandler("b1"))
	for _, tc := range []struct {
		name   string
		end    func(*Server)
		reason sluicev1.CloseReason
	}{
		{"drain", (*Server).Drain, closeDraining},
		{"close", (*Server).Close, sluicev1.CloseReason_CLOSE_REASON_LISTENER_CLOSED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// An IdleTimeout far past the test's deadline: only Drain or
			// Close ends the parked connection within it.
			p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}, IdleTimeout: time.Hour})
			c := p.dial()
			br := bufio.NewReader(c)
			get(t, c, br, "/")
			waitForParked(t, 1)
			tc.end(p.srv)
			c.SetReadDeadline(time.Now().Add(defaultTestTimeout))
			expectEOF(t, br)
			if ci := p.info(); ci.Reason != tc.reason {
				t.Errorf("ConnInfo reason %v, want %v", ci.Reason, tc.reason)
			}
			waitForParked(t, 0)
			// No connection parks any more after Close, or while draining:
			// a new one is served and then waits on its goroutine (Close)
			// or is served once and closed (Drain).
			n := p.dial()
			nbr := bufio.NewReader(n)
			io.WriteString(n, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			if r := readResponse(t, nbr, "GET"); r.code != 200 {
				t.Fatalf("after %s: %s", tc.name, r.status)
			}
			time.Sleep(2*parkAfter + 50*time.Millisecond)
			if k := parkedCount(); k != 0 {
				t.Errorf("%d connections parked after %s", k, tc.name)
			}
			n.Close()
		})
	}
}

// A client that hangs up while parked is recorded as having closed.
func TestParkedConnectionClientHangsUp(t *testing.T) {
	b := startBackend(t, "b1", nameHandler("b1"))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	c := p.dial()
	br := bufio.NewReader(c)
	get(t, c, br, "/")
	waitForParked(t, 1)
	c.Close()
	if ci := p.info(); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED || ci.Requests != 1 {
		t.Errorf("ConnInfo: reason %v, %d requests; want CLIENT_CLOSED, 1", ci.Reason, ci.Requests)
	}
	waitForParked(t, 0)
}

// heldHandler answers paths under /held/ only once release is closed,
// counting each such request as it arrives; others at once.
type heldHandler struct {
	release chan struct{}
	held    atomic.Int32
}

func (h *heldHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/held/") {
		h.held.Add(1)
		<-h.release
	}
	fmt.Fprintf(w, "b1 %s", r.URL.Path)
}

func waitHeld(t *testing.T, h *heldHandler, n int32) {
	t.Helper()
	waitCount(t, "requests reached the backend", func() int { return int(h.held.Load()) }, int(n))
}

// Go counts a connection as setting up until its first request is
// answered; a busy connection past it no longer counts, though it keeps
// its goroutine.
func TestGoCountsUntilFirstResponse(t *testing.T) {
	h := &heldHandler{release: make(chan struct{})}
	b := startBackend(t, "b1", h)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	c := p.dial()
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /held/1 HTTP/1.1\r\nHost: x\r\n\r\n")
	waitHeld(t, h, 1)
	if n := p.srv.setups.InFlight(); n != 1 {
		t.Errorf("%d connections setting up during the first request, want 1", n)
	}
	close(h.release)
	if r := readResponse(t, br, "GET"); r.code != 200 || r.body != "b1 /held/1" {
		t.Fatalf("first request: %s %q", r.status, r.body)
	}
	h.release = make(chan struct{})
	io.WriteString(c, "GET /held/2 HTTP/1.1\r\nHost: x\r\n\r\n")
	waitHeld(t, h, 2)
	if n, parked := p.srv.setups.InFlight(), parkedCount(); n != 0 || parked != 0 {
		t.Errorf("during the second request: %d setting up, %d parked; want 0 and 0", n, parked)
	}
	close(h.release)
	if r := readResponse(t, br, "GET"); r.code != 200 || r.body != "b1 /held/2" {
		t.Fatalf("second request: %s %q", r.status, r.body)
	}
}

// Pacing waits for the CPU, never for the network: with twice pace.After
// connections stuck in their first request (pace.After at least still
// setting up), a new connection is still accepted and served (the stuck
// ones are released only after it).
func TestGoDoesNotWaitForStuckSetups(t *testing.T) {
	h := &heldHandler{release: make(chan struct{})}
	b := startBackend(t, "b1", h)
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	const stuck = 2 * pace.After
	brs := make([]*bufio.Reader, stuck)
	for i := range stuck {
		c := p.dial()
		brs[i] = bufio.NewReader(c)
		fmt.Fprintf(c, "GET /held/%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	waitHeld(t, h, stuck)
	// Each stuck connection counts as setting up, unless its request came
	// after its first read found nothing: it parked first, which counts
	// as set up. On a busy machine a few may; the gate waits at a barrier
	// from pace.After on.
	if n := p.srv.setups.InFlight(); n < pace.After {
		t.Errorf("%d connections setting up, want the %d stuck ones, %d at least", n, stuck, pace.After)
	}
	c := p.dial()
	get(t, c, bufio.NewReader(c), "/ok")
	close(h.release)
	for i, br := range brs {
		if r := readResponse(t, br, "GET"); r.code != 200 || r.body != fmt.Sprintf("b1 /held/%d", i) {
			t.Errorf("stuck request %d: %s %q", i, r.status, r.body)
		}
	}
}
