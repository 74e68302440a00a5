package httpproxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestRetiredEndpointIsPickedAgain: an apply that retires the endpoint a
// request just picked must not fail the request: nothing was sent, so the
// proxy picks again from the new configuration.
func TestRetiredEndpointIsPickedAgain(t *testing.T) {
	gone := startBackend(t, "gone", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "gone") }))
	live := startBackend(t, "live", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "live") }))
	p := startProxy(t, &Config{})
	// The first config picks "gone", which the apply retires (Drain) and
	// replaces before the connect; the new config only knows "live".
	p.srv.SetConfig(&Config{Director: retiringDirector{ep: gone.ep, retire: func() {
		gone.ep.Drain()
		p.srv.SetConfig(&Config{Director: &rrDirector{eps: []*upstream.Endpoint{live.ep}}})
	}}})
	resp, err := keepAliveClient().Get("http://" + p.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "live" {
		t.Errorf("got %d %q, want 200 from live", resp.StatusCode, body)
	}
	if gone.ep.Inflight() != 0 || live.ep.Inflight() != 0 {
		t.Errorf("in-flight counts %d/%d after the request, want 0/0", gone.ep.Inflight(), live.ep.Inflight())
	}
}

// TestNonIdempotentRequestIsNotReplayed: a POST whose pooled connection
// breaks before any response byte may have been acted on by the endpoint;
// it is answered 502, not sent again. A GET in the same spot is retried.
func TestNonIdempotentRequestIsNotReplayed(t *testing.T) {
	var seen atomic.Int64
	ln := listen(t)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				// First request on a connection is answered; the second
				// is read and then the connection is dropped unanswered.
				for i := 0; ; i++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if i == 1 {
						seen.Add(1)
						return
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	be := &backend{ep: upstream.New("web", "flaky", ln.Addr().String())}
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{be.ep}}})
	c := p.dial()
	defer c.Close()
	br := bufio.NewReader(c)
	send := func(method string) *rawResponse {
		fmt.Fprintf(c, "%s / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", method)
		return readResponse(t, br, method)
	}
	if r := send("GET"); r.code != 200 {
		t.Fatalf("first request: %d", r.code)
	}
	if r := send("POST"); r.code != 502 {
		t.Errorf("POST on a connection dropped unanswered: %d, want 502", r.code)
	}
	if n := seen.Load(); n != 1 {
		t.Errorf("the endpoint saw the POST %d times, want 1", n)
	}
}

// TestPooledConnectionReusedForBodyAfterIdle: a request with a body checks
// that its pooled connection is still open; a connection idle in the pool
// for longer than its last deadline must pass that check.
func TestPooledConnectionReusedForBodyAfterIdle(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 1.5s")
	}
	be := startBackend(t, "a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{be.ep}}})
	client := keepAliveClient()
	post := func() {
		resp, err := client.Post("http://"+p.addr+"/", "text/plain", strings.NewReader("hello"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	post()
	time.Sleep(1500 * time.Millisecond) // past the endpoint slice deadline
	post()
	if n := be.ln.accepted.Load(); n != 1 {
		t.Errorf("endpoint accepted %d connections for two POSTs, want 1 (pooled)", n)
	}
}

// TestShutdownDuringLargeUpload: an endpoint shut down (drain) while a
// large request body is spliced or copied to it answers 502 and records
// DRAINED, not a closed listener.
func TestShutdownDuringLargeUpload(t *testing.T) { eachSpliceMode(t, shutdownDuringLargeUpload) }

func shutdownDuringLargeUpload(t *testing.T) {
	started := make(chan struct{}, 1)
	be := startBackend(t, "a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		io.Copy(io.Discard, r.Body)
	}))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{be.ep}}})
	c := p.dial()
	defer c.Close()
	const size = 64 << 20
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)
	go func() {
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return
			}
			if sent == 1<<20 {
				<-started
				be.ep.Shutdown()
			}
		}
	}()
	br := bufio.NewReader(c)
	r := readResponse(t, br, "POST")
	if r.code != 502 {
		t.Errorf("status %d, want 502", r.code)
	}
	c.Close()
	if ci := p.info(); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_DRAINED {
		t.Errorf("reason %v, want DRAINED", ci.Reason)
	}
}

// retiringDirector picks ep and then runs retire, as an apply racing the
// request would.
type retiringDirector struct {
	ep     *upstream.Endpoint
	retire func()
}

func (d retiringDirector) Pick(*Request) (*upstream.Endpoint, time.Duration, error) {
	d.ep.Acquire()
	d.retire()
	return d.ep, time.Second, nil
}

// panicDirector panics on the pick for a request to /panic.
type panicDirector struct{ ep *upstream.Endpoint }

func (d panicDirector) Pick(r *Request) (*upstream.Endpoint, time.Duration, error) {
	if string(r.Path()) == "/panic" {
		panic("test: director bug")
	}
	d.ep.Acquire()
	return d.ep, time.Second, nil
}

// TestPanicClosesOnlyItsConnection: a bug that panics while serving one
// connection closes that connection; the process and other connections
// go on. Connections that park serve their first request on their own
// goroutine and the next ones from inside their idle wait; the others
// serve on a worker: all recover.
func TestPanicClosesOnlyItsConnection(t *testing.T) {
	for _, start := range serveModes {
		for _, before := range []int{0, 2} {
			t.Run(fmt.Sprintf("%s/after %d requests", start.name, before), func(t *testing.T) {
				testPanicClosesOnlyItsConnection(t, start.start, before)
			})
		}
	}
}

func testPanicClosesOnlyItsConnection(t *testing.T, start func(testing.TB, *Config) *proxy, before int) {
	be := startBackend(t, "a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	p := start(t, &Config{Director: panicDirector{ep: be.ep}})
	c := p.dial()
	br := bufio.NewReader(c)
	for range before {
		getBody(t, c, br, "/", "ok")
	}
	fmt.Fprintf(c, "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := io.ReadAll(br); err != nil && !isReset(err) {
		t.Fatalf("panicking connection: %v, want it closed", err)
	}
	if ci := p.info(); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_IO_ERROR || ci.Requests != uint64(before+1) {
		t.Errorf("reason %v after %d requests, want IO_ERROR after %d", ci.Reason, ci.Requests, before+1)
	}
	resp, err := keepAliveClient().Get("http://" + p.addr + "/")
	if err != nil {
		t.Fatalf("next connection after a panic: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Errorf("next connection got %q, want ok", body)
	}
}

// A panic after the endpoint was picked and connected (here in the
// outlier callback a 500 runs) closes the endpoint connection and gives
// the endpoint its request back: it is not left counted in flight, which
// LEAST_CONN and max_connections would see.
func TestPanicReleasesEndpoint(t *testing.T) {
	for _, start := range serveModes {
		t.Run(start.name, func(t *testing.T) {
			be := startBackend(t, "a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/fail" {
					w.WriteHeader(500)
				}
			}))
			be.ep.SetOutlierPolicy(&upstream.OutlierPolicy{Responses5xx: 1, Outlier: func(*upstream.Endpoint, upstream.Cause) {
				panic("test: outlier callback bug")
			}})
			p := start.start(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{be.ep}}})
			c := p.dial()
			br := bufio.NewReader(c)
			getBody(t, c, br, "/", "")
			fmt.Fprintf(c, "GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")
			if _, err := io.ReadAll(br); err != nil && !isReset(err) {
				t.Fatalf("panicking connection: %v, want it closed", err)
			}
			if ci := p.info(); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_IO_ERROR {
				t.Errorf("reason %v, want IO_ERROR", ci.Reason)
			}
			waitFor(t, func() bool { return be.ep.Inflight() == 0 && be.ep.Conns() == 0 })
		})
	}
}
