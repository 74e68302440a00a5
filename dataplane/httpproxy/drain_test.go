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

// waitIdle waits until n connections of the proxy wait for a request,
// where Drain finds them: idle on their goroutine, or parked. A connection
// served with ServeConnAsync is idle only for parkAfter before it parks,
// which a busy machine may let pass unseen.
func (p *proxy) waitIdle(n int) {
	p.t.Helper()
	waitCount(p.t, "idle connections", func() int {
		k := 0
		p.srv.mu.Lock()
		defer p.srv.mu.Unlock()
		for cc := p.srv.conns; cc != nil; cc = cc.next {
			if st := cc.state.Load(); st == connIdle || isParked(st) {
				k++
			}
		}
		return k
	}, n)
}

// drainNow calls Drain and checks that it returns without waiting for the
// server's connections. Where one is busy, its endpoint holds its request
// until after drainNow: a Drain that waited for it would not return at
// all, which the test's deadline tells.
func (p *proxy) drainNow() {
	p.t.Helper()
	done := make(chan struct{})
	go func() {
		p.srv.Drain()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(defaultTestTimeout):
		p.t.Fatalf("Drain did not return in %v", defaultTestTimeout)
	}
}

// expectDrainedAnswer reads the answer to the request Drain let through on
// the proxy's one connection: 200 with want as its body and Connection:
// close, then the close, recorded as the connection's requests-th request
// and ended by Drain.
func (p *proxy) expectDrainedAnswer(br *bufio.Reader, method, want string, requests uint64) {
	p.t.Helper()
	r := readResponse(p.t, br, method)
	if r.code != 200 || r.body != want || !closes(r) {
		p.t.Fatalf("got %s %q close=%v, want 200 %q with Connection: close", r.status, r.body, closes(r), want)
	}
	expectEOF(p.t, br)
	if ci := p.info(); ci.Requests != requests || ci.Reason != closeDraining {
		p.t.Errorf("ConnInfo requests=%d reason=%v, want %d %v", ci.Requests, ci.Reason, requests, closeDraining)
	}
}

// holdingBackend answers /slow... once release is closed, telling got when
// such a request arrived; other paths are answered at once. It counts the
// requests it saw.
type holdingBackend struct {
	*backend
	got      chan struct{}
	release  chan struct{}
	requests atomic.Int64
}

func startHoldingBackend(t *testing.T) *holdingBackend {
	h := &holdingBackend{got: make(chan struct{}, 16), release: make(chan struct{})}
	h.backend = startBackend(t, "b1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.requests.Add(1)
		if strings.HasPrefix(r.URL.Path, "/slow") {
			h.got <- struct{}{}
			<-h.release
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(400)
			return
		}
		fmt.Fprintf(w, "%s %d", r.URL.Path, len(body))
	}))
	return h
}

func (h *holdingBackend) waitRequest(t *testing.T) {
	t.Helper()
	select {
	case <-h.got:
	case <-time.After(defaultTestTimeout):
		t.Fatal("the request did not reach the endpoint")
	}
}

// An idle keep-alive connection, and one that has not sent its first
// request, are closed at once by Drain, with nothing written: waiting on
// their goroutine (ServeConn), or parked (ServeConnAsync, once they waited
// parkAfter).
func TestDrainClosesIdleConnections(t *testing.T) {
	for _, tc := range serveModes {
		t.Run(tc.name, func(t *testing.T) { drainClosesIdleConnections(t, tc.start) })
	}
}

func drainClosesIdleConnections(t *testing.T, start func(testing.TB, *Config) *proxy) {
	b := startBackend(t, "b1", nameHandler("b1"))
	// Timeouts far past the test's deadline: only Drain closes the
	// connections within it.
	p := start(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}, IdleTimeout: time.Hour, RequestHeaderTimeout: time.Hour})
	kept := p.dial()
	kbr := bufio.NewReader(kept)
	io.WriteString(kept, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := readResponse(t, kbr, "GET"); r.code != 200 || closes(r) {
		t.Fatalf("before Drain: %s close=%v", r.status, closes(r))
	}
	fresh := p.dial()
	fbr := bufio.NewReader(fresh)
	p.waitIdle(2)

	p.drainNow()
	for _, c := range []struct {
		c  net.Conn
		br *bufio.Reader
	}{{kept, kbr}, {fresh, fbr}} {
		c.c.SetReadDeadline(time.Now().Add(defaultTestTimeout))
		expectEOF(t, c.br)
	}
	byReqs := map[uint64]*ConnInfo{}
	for range 2 {
		ci := p.info()
		byReqs[ci.Requests] = ci
	}
	for reqs, ci := range byReqs {
		if ci.Reason != closeDraining {
			t.Errorf("connection with %d requests: reason %v, want %v", reqs, ci.Reason, closeDraining)
		}
	}
	if byReqs[0] == nil || byReqs[1] == nil {
		t.Errorf("ConnInfos %v, want one with 0 requests and one with 1", byReqs)
	}
	if ci := byReqs[0]; ci != nil && ci.BytesOut != 0 {
		t.Errorf("new connection: %d bytes written, want 0", ci.BytesOut)
	}
	p.srv.Drain() // again: nothing happens
}

// A request in flight when Drain is called completes; its response says
// Connection: close, and the connection then closes.
func TestDrainFinishesInFlightRequest(t *testing.T) {
	// After a first request, the next one is served from inside the
	// connection's idle wait (inline.go).
	for _, before := range []int{0, 1} {
		t.Run(fmt.Sprintf("after %d requests", before), func(t *testing.T) {
			h := startHoldingBackend(t)
			p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{h.ep}}})
			c := p.dial()
			br := bufio.NewReader(c)
			for range before {
				getBody(t, c, br, "/quick", "/quick 0")
			}
			io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
			h.waitRequest(t)
			p.drainNow()
			time.Sleep(50 * time.Millisecond) // the connection must stay through this
			close(h.release)
			r := readResponse(t, br, "GET")
			if r.code != 200 || r.body != "/slow 0" || !closes(r) {
				t.Fatalf("in-flight request: %s %q close=%v, want 200 \"/slow 0\" with Connection: close", r.status, r.body, closes(r))
			}
			expectEOF(t, br)
			if ci := p.info(); ci.Requests != uint64(before+1) || ci.Reason != closeDraining {
				t.Errorf("ConnInfo requests=%d reason=%v, want %d %v", ci.Requests, ci.Reason, before+1, closeDraining)
			}
		})
	}
}

// A request whose head or body is still arriving when Drain is called is
// read in full and answered with Connection: close: Drain never cuts a
// request.
func TestDrainDoesNotCutArrivingRequest(t *testing.T) {
	b := startBackend(t, "b1", nameHandler("b1"))
	for _, tc := range []struct{ name, first, rest, want string }{
		{"head", "POST /head HTTP/1.1\r\nHo", "st: x\r\nContent-Length: 3\r\n\r\nabc", "b1 /head"},
		{"body", "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc", "def", "b1 /body"},
	} {
		for _, mode := range serveModes {
			t.Run(tc.name+"/"+mode.name, func(t *testing.T) {
				// With ServeConn the connection waits on its goroutine, idle
				// until the request's first bytes and busy from then on. One
				// that parks is busy for a moment as it wakes, and idle again
				// in the wait that reads them: Drain may find it there, with
				// the bytes on its socket.
				p := mode.start(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
				c := p.dial()
				br := bufio.NewReader(c)
				// A first request makes the connection one that Drain closes
				// when idle.
				io.WriteString(c, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
				if r := readResponse(t, br, "GET"); closes(r) {
					t.Fatal("first response closes")
				}
				p.waitIdle(1)
				io.WriteString(c, tc.first)
				p.waitIdle(0) // the connection is busy with the request
				p.srv.Drain()
				time.Sleep(50 * time.Millisecond)
				io.WriteString(c, tc.rest)
				p.expectDrainedAnswer(br, "POST", tc.want, 2)
			})
		}
	}
}

// A request that is on the connection's socket, unread, when the
// connection becomes idle during Drain is served with Connection: close,
// not reset: the client sent it while the answer before it streamed, whose
// head went out before Drain and kept the connection.
func TestDrainServesRequestWaitingOnSocket(t *testing.T) {
	for _, tc := range serveModes {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			b := startBackend(t, "b1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/stream" {
					io.WriteString(w, "b1 "+r.URL.Path)
					return
				}
				w.Header().Set("Content-Length", "10")
				io.WriteString(w, "hello")
				w.(http.Flusher).Flush()
				<-release
				io.WriteString(w, "world")
			}))
			p := tc.start(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
			c := p.dial()
			br := bufio.NewReader(c)
			io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
			req, _ := http.NewRequest("GET", "http://x/", nil)
			resp, err := http.ReadResponse(br, req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Close {
				t.Fatal("the streaming answer closes before Drain")
			}
			first := make([]byte, 5)
			if _, err := io.ReadFull(resp.Body, first); err != nil {
				t.Fatal(err)
			}
			io.WriteString(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
			p.drainNow()
			close(release)
			if rest, err := io.ReadAll(resp.Body); err != nil || string(first)+string(rest) != "helloworld" {
				t.Fatalf("streamed body %q%q, err %v", first, rest, err)
			}
			p.expectDrainedAnswer(br, "GET", "b1 /next", 2)
		})
	}
}

// A parked connection whose next request is on its socket when Drain
// takes it, before the parker woke it, is served with Connection: close,
// not closed under the request. The test holds the parker (idlePark.mu)
// from before the request is sent until Drain took the connection.
func TestDrainServesRequestOfParkedConnection(t *testing.T) {
	b := startBackend(t, "b1", nameHandler("b1"))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	if !parkingWorks() {
		t.Skip("connections do not park here")
	}
	c := p.dial()
	br := bufio.NewReader(c)
	get(t, c, br, "/first")
	waitForParked(t, 1)
	p.srv.mu.Lock()
	cc := p.srv.conns
	p.srv.mu.Unlock()
	idlePark.mu.Lock()
	held := true
	defer func() {
		if held {
			idlePark.mu.Unlock()
		}
	}()
	io.WriteString(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, cc.requestWaiting)
	drained := make(chan struct{})
	go func() {
		p.srv.Drain() // takes the connection, then waits for idlePark.mu
		close(drained)
	}()
	waitFor(t, func() bool { return !isParked(cc.state.Load()) })
	held = false
	idlePark.mu.Unlock()
	select {
	case <-drained:
	case <-time.After(defaultTestTimeout):
		t.Fatal("Drain did not return")
	}
	p.expectDrainedAnswer(br, "GET", "b1 /next", 2)
}

// A connection accepted after Drain is served one request, whenever it
// sends it, and closed after it.
func TestDrainServesNewConnectionOnce(t *testing.T) {
	for _, tc := range serveModes {
		t.Run(tc.name, func(t *testing.T) {
			b := startBackend(t, "b1", nameHandler("b1"))
			p := tc.start(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
			p.drainNow()
			// 100ms: longer than a connection waits before it parks.
			for _, pause := range []time.Duration{0, 100 * time.Millisecond} {
				c := p.dial()
				br := bufio.NewReader(c)
				time.Sleep(pause) // not closed while it waits for its first request
				io.WriteString(c, "GET /new HTTP/1.1\r\nHost: x\r\n\r\n")
				r := readResponse(t, br, "GET")
				if r.code != 200 || r.body != "b1 /new" || !closes(r) {
					t.Fatalf("after a pause of %v: %s %q close=%v, want 200 with Connection: close", pause, r.status, r.body, closes(r))
				}
				expectEOF(t, br)
				if ci := p.info(); ci.Requests != 1 || ci.Reason != closeDraining {
					t.Errorf("ConnInfo requests=%d reason=%v, want 1 %v", ci.Requests, ci.Reason, closeDraining)
				}
			}
		})
	}
}

// Pipelined requests: the one being served when Drain is called (or the
// first one of a connection accepted after Drain) is answered with
// Connection: close; those behind it are not served, and the connection
// closes without a reset that would destroy the response.
func TestDrainPipelined(t *testing.T) {
	const pipeline = "GET /%s HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\n\r\n"
	t.Run("in-flight", func(t *testing.T) {
		h := startHoldingBackend(t)
		p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{h.ep}}})
		c := p.dial()
		br := bufio.NewReader(c)
		fmt.Fprintf(c, pipeline, "slow")
		h.waitRequest(t)
		p.drainNow()
		close(h.release)
		if r := readResponse(t, br, "GET"); r.body != "/slow 0" || !closes(r) {
			t.Fatalf("first: %q close=%v, want \"/slow 0\" with Connection: close", r.body, closes(r))
		}
		expectEOF(t, br)
		c.Close() // ends the proxy's linger at once
		if ci := p.info(); ci.Requests != 1 || ci.Reason != closeDraining {
			t.Errorf("ConnInfo requests=%d reason=%v, want 1 %v", ci.Requests, ci.Reason, closeDraining)
		}
		if n := h.requests.Load(); n != 1 {
			t.Errorf("the endpoint saw %d requests, want 1", n)
		}
	})
	t.Run("after-drain", func(t *testing.T) {
		h := startHoldingBackend(t)
		p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{h.ep}}})
		p.drainNow()
		c := p.dial()
		br := bufio.NewReader(c)
		fmt.Fprintf(c, pipeline, "1")
		if r := readResponse(t, br, "GET"); r.body != "/1 0" || !closes(r) {
			t.Fatalf("first: %q close=%v, want \"/1 0\" with Connection: close", r.body, closes(r))
		}
		expectEOF(t, br)
		if n := h.requests.Load(); n != 1 {
			t.Errorf("the endpoint saw %d requests, want 1", n)
		}
	})
}

// Many clients loop requests (some with pauses, some on connections that
// only just opened) while Drain is called: every response a client gets
// is complete, a connection ends either after a response with Connection:
// close or before any byte of a response, and every connection ends.
func TestDrainRace(t *testing.T) { eachSpliceMode(t, drainRace) }

func drainRace(t *testing.T) {
	// 100 KiB: what is left past the first read of the response (at most
	// bbSize) is still spliceMin or more, the large-body path.
	sizes := []int{10, 3000, 100 << 10}
	bodies := map[int][]byte{}
	for _, n := range sizes {
		bodies[n] = pattern(n)
	}
	b := startBackend(t, "b1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		body := bodies[n]
		if r.URL.Query().Has("chunked") {
			w.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
			w.Write(body[len(body)/2:])
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}))
	rounds := 5
	if testing.Short() {
		rounds = 1
	}
	for round := range rounds {
		p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
		const clients = 24
		var (
			wg                        sync.WaitGroup
			served, closed, cutBefore atomic.Int64
			drained                   atomic.Bool
			mu                        sync.Mutex
			failures                  []string
		)
		fail := func(format string, args ...any) {
			mu.Lock()
			failures = append(failures, fmt.Sprintf(format, args...))
			mu.Unlock()
		}
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Some clients open their connection late, around Drain.
				if i%6 == 5 {
					time.Sleep(time.Duration(20+i) * time.Millisecond)
				}
				c, err := net.Dial("tcp", p.addr)
				if err != nil {
					fail("client %d: dial: %v", i, err)
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(defaultTestTimeout))
				cr := &countingReader{r: c}
				br := bufio.NewReader(cr)
				for k := 0; ; k++ {
					n := sizes[(i+k)%len(sizes)]
					target := fmt.Sprintf("/%d", n)
					if (i+k)%4 == 3 {
						target += "?chunked"
					}
					if br.Buffered() != 0 {
						fail("client %d request %d: %d bytes more than the responses", i, k, br.Buffered())
						return
					}
					before := cr.n
					if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", target); err != nil {
						// Closed idle: the request never went out whole.
						cutBefore.Add(1)
						return
					}
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						// ReadResponse says ErrUnexpectedEOF for an EOF
						// before the status line too; what tells a cut
						// response is the bytes that came.
						if cr.n != before || !(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err)) {
							fail("client %d request %d: %v after %d response bytes", i, k, err, cr.n-before)
						}
						if !drained.Load() {
							fail("client %d request %d: closed before Drain: %v", i, k, err)
						}
						cutBefore.Add(1)
						return
					}
					got, err := io.ReadAll(resp.Body)
					if err != nil || !bytes.Equal(got, bodies[n]) {
						fail("client %d request %d: body of %d bytes (%v), want %d", i, k, len(got), err, n)
						return
					}
					served.Add(1)
					if resp.Close {
						if !drained.Load() {
							fail("client %d request %d: Connection: close before Drain", i, k)
						}
						closed.Add(1)
						if _, err := br.ReadByte(); !errors.Is(err, io.EOF) && !isReset(err) {
							fail("client %d: after Connection: close: %v, want EOF", i, err)
						}
						return
					}
					if k%3 == 1 {
						time.Sleep(time.Duration(i%4) * time.Millisecond) // idle a little
					}
				}
			}()
		}
		time.Sleep(30 * time.Millisecond)
		drained.Store(true)
		p.srv.Drain()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(defaultTestTimeout):
			t.Fatalf("round %d: clients still served %v after Drain", round, defaultTestTimeout)
		}
		for _, f := range failures {
			t.Errorf("round %d: %s", round, f)
		}
		for range clients {
			if ci := p.info(); ci.Reason != closeDraining {
				t.Errorf("round %d: connection with %d requests closed with %v, want %v", round, ci.Requests, ci.Reason, closeDraining)
			}
		}
		t.Logf("round %d: %d responses, %d with Connection: close, %d connections closed idle", round, served.Load(), closed.Load(), cutBefore.Load())
		if closed.Load()+cutBefore.Load() != clients {
			t.Errorf("round %d: %d closes announced + %d idle closes, want %d connections", round, closed.Load(), cutBefore.Load(), clients)
		}
	}
}
