package httpproxy

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// skipDirector picks the first endpoint the request has not failed to
// connect to, as a hash policy that skips failed endpoints would (without
// the skip it would pick the same one every time). It records, for every
// pick, which endpoints Request.Failed reported.
type skipDirector struct {
	eps     []*upstream.Endpoint
	timeout time.Duration // connect timeout; a second when 0

	mu     sync.Mutex
	picks  []string   // name of each endpoint picked
	failed [][]string // for each pick, the names Failed reported
}

func (d *skipDirector) Pick(r *Request) (*upstream.Endpoint, time.Duration, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	failed := []string{}
	for _, ep := range d.eps {
		if r.Failed(ep) {
			failed = append(failed, ep.Name)
		}
	}
	d.failed = append(d.failed, failed)
	timeout := d.timeout
	if timeout == 0 {
		timeout = time.Second
	}
	for _, ep := range d.eps {
		if !r.Failed(ep) {
			d.picks = append(d.picks, ep.Name)
			ep.Acquire()
			return ep, timeout, nil
		}
	}
	return nil, 0, ErrNoEndpoint
}

// seen returns the picks and what Failed reported on each.
func (d *skipDirector) seen() (picks []string, failed [][]string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.picks), slices.Clone(d.failed)
}

// deadEndpoint returns an endpoint on a loopback port nothing listens on:
// connects to it are refused. The port is below the ephemeral range
// (loopback.FreeAddr): one the kernel handed out and took back may be
// listened on again by a test running beside this one.
func deadEndpoint(t testing.TB, name string) *upstream.Endpoint {
	t.Helper()
	return upstream.New("web", name, loopback.FreeAddr(t))
}

// bodyRecorder is a backend handler that answers with its name and records
// the digest of every request body it received.
type bodyRecorder struct {
	name string
	mu   sync.Mutex
	sums [][sha256.Size]byte
}

func (b *bodyRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	if _, err := io.Copy(h, r.Body); err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	b.mu.Lock()
	b.sums = append(b.sums, sum)
	b.mu.Unlock()
	io.WriteString(w, b.name)
}

func (b *bodyRecorder) bodies() [][sha256.Size]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.sums)
}

// TestConnectFailureIsRetried: a request whose endpoint refuses the
// connection is sent to another endpoint, which the Director learns through
// Request.Failed; without retries it is answered 502. Failed starts empty
// for every request, and ConnInfo.Retries adds up over the connection.
func TestConnectFailureIsRetried(t *testing.T) {
	for _, tt := range []struct {
		name    string
		retries int
		code    int
		body    string
		picks   []string // per request
	}{
		{"retries 3", 3, 200, "live", []string{"dead", "live"}},
		{"retries 1", 1, 200, "live", []string{"dead", "live"}},
		{"no retries", 0, 502, "could not connect to the endpoint\n", []string{"dead"}},
		{"negative", -1, 502, "could not connect to the endpoint\n", []string{"dead"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dead := deadEndpoint(t, "dead")
			live := startBackend(t, "live", &bodyRecorder{name: "live"})
			d := &skipDirector{eps: []*upstream.Endpoint{dead, live.ep}}
			p := startProxy(t, &Config{Director: d, Retries: tt.retries})
			c := p.dial()
			br := bufio.NewReader(c)
			const requests = 2
			for i := range requests {
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				r := readResponse(t, br, "GET")
				if r.code != tt.code || r.body != tt.body {
					t.Fatalf("request %d: %d %q, want %d %q", i, r.code, r.body, tt.code, tt.body)
				}
			}
			c.Close()
			ci := p.info()
			picks, failed := d.seen()
			var wantPicks []string
			var wantFailed [][]string
			for range requests {
				wantPicks = append(wantPicks, tt.picks...)
				for i := range tt.picks {
					wantFailed = append(wantFailed, []string{"dead"}[:i])
				}
			}
			if !slices.Equal(picks, wantPicks) {
				t.Errorf("picks %v, want %v", picks, wantPicks)
			}
			if !slices.EqualFunc(failed, wantFailed, slices.Equal) {
				t.Errorf("Failed reported %v on the picks, want %v", failed, wantFailed)
			}
			if want := uint64(requests * (len(tt.picks) - 1)); ci.Retries != want || ci.Requests != requests {
				t.Errorf("ConnInfo: %d retries over %d requests, want %d over %d", ci.Retries, ci.Requests, want, requests)
			}
			if tt.code == 200 && (ci.Endpoint != "live" || ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED) {
				t.Errorf("ConnInfo: endpoint %q reason %v, want live CLIENT_CLOSED", ci.Endpoint, ci.Reason)
			}
			// The 502s kept the connection: it closed as the client
			// closed it, and its record counts what failed on it.
			failedN, wantFailures := uint64(0), []sluicev1.CloseReason(nil)
			if tt.code == 502 {
				failedN, wantFailures = requests, []sluicev1.CloseReason{sluicev1.CloseReason_CLOSE_REASON_NO_ENDPOINT}
			}
			if ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED || ci.Failed != failedN || !slices.Equal(ci.Failures.List(), wantFailures) {
				t.Errorf("ConnInfo: reason %v, %d failed for %v; want CLIENT_CLOSED, %d for %v", ci.Reason, ci.Failed, ci.Failures.List(), failedN, wantFailures)
			}
			if dead.Inflight() != 0 || live.ep.Inflight() != 0 || dead.Conns() != 0 {
				t.Errorf("after the requests: inflight dead %d live %d, dead conns %d; want 0 0 0", dead.Inflight(), live.ep.Inflight(), dead.Conns())
			}
		})
	}
}

// TestRequestWithBodyIsRetried: nothing of a request reaches an endpoint
// that refuses the connection, so a POST is retried too, with whatever of
// its body the proxy had read already; the endpoint that answers gets the
// whole body, once.
func TestRequestWithBodyIsRetried(t *testing.T) { eachSpliceMode(t, requestWithBodyIsRetried) }

func requestWithBodyIsRetried(t *testing.T) {
	small := "hello, world"
	large := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB: streamed, spliced or copied
	for _, tt := range []struct {
		name    string
		body    string
		chunked bool
		expect  bool
	}{
		{"small", small, false, false},
		{"large", large, false, false},
		{"chunked", large, true, false},
		{"expect 100-continue", small, false, true},
		{"empty", "", false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dead := deadEndpoint(t, "dead")
			rec := &bodyRecorder{name: "live"}
			live := startBackend(t, "live", rec)
			d := &skipDirector{eps: []*upstream.Endpoint{dead, live.ep}}
			p := startProxy(t, &Config{Director: d, Retries: 3})

			var body io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				body = io.MultiReader(body) // hides the length: chunked
			}
			req, _ := http.NewRequest("POST", "http://"+p.addr+"/", body)
			if tt.expect {
				req.Header.Set("Expect", "100-continue")
			}
			client := keepAliveClient()
			client.Transport.(*http.Transport).ExpectContinueTimeout = defaultTestTimeout
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(got) != "live" {
				t.Fatalf("got %d %q, want 200 live", resp.StatusCode, got)
			}
			if sums := rec.bodies(); len(sums) != 1 || sums[0] != sha256.Sum256([]byte(tt.body)) {
				t.Errorf("the endpoint received %d bodies (the right one: %v), want the %d-byte body once",
					len(sums), len(sums) == 1 && sums[0] == sha256.Sum256([]byte(tt.body)), len(tt.body))
			}
			if picks, _ := d.seen(); !slices.Equal(picks, []string{"dead", "live"}) {
				t.Errorf("picks %v, want [dead live]", picks)
			}
			client.CloseIdleConnections()
			if ci := p.info(); ci.Retries != 1 {
				t.Errorf("ConnInfo.Retries = %d, want 1", ci.Retries)
			}
			if dead.Inflight() != 0 || live.ep.Inflight() != 0 {
				t.Errorf("inflight dead %d live %d, want 0 0", dead.Inflight(), live.ep.Inflight())
			}
		})
	}
}

// TestRetriesRunOut: when every endpoint refuses, a request tries
// 1+Retries of them and is answered 502; when the Director has nothing left
// to offer (it skips failed endpoints) the answer is still the connect
// failure, 502, not 503.
func TestRetriesRunOut(t *testing.T) {
	t.Run("retries spent", func(t *testing.T) {
		var eps []*upstream.Endpoint
		for _, n := range []string{"a", "b", "c", "d"} {
			eps = append(eps, deadEndpoint(t, n))
		}
		d := &skipDirector{eps: eps}
		p := startProxy(t, &Config{Director: d, Retries: 2})
		c := p.dial()
		br := bufio.NewReader(c)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if r := readResponse(t, br, "GET"); r.code != 502 {
			t.Errorf("got %d, want 502", r.code)
		}
		// The request was read in full: the connection stays usable.
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if r := readResponse(t, br, "GET"); r.code != 502 {
			t.Errorf("second request: got %d, want 502", r.code)
		}
		c.Close()
		ci := p.info()
		if ci.Retries != 4 || ci.Reason != sluicev1.CloseReason_CLOSE_REASON_NO_ENDPOINT {
			t.Errorf("ConnInfo: %d retries, reason %v; want 4, NO_ENDPOINT", ci.Retries, ci.Reason)
		}
		want := []string{"a", "b", "c", "a", "b", "c"}
		if picks, _ := d.seen(); !slices.Equal(picks, want) {
			t.Errorf("picks %v, want %v", picks, want)
		}
		for _, ep := range eps {
			if ep.Inflight() != 0 {
				t.Errorf("%s: inflight %d, want 0", ep.Name, ep.Inflight())
			}
		}
	})
	t.Run("nothing left to pick", func(t *testing.T) {
		dead := deadEndpoint(t, "dead")
		d := &skipDirector{eps: []*upstream.Endpoint{dead}}
		p := startProxy(t, &Config{Director: d, Retries: 3})
		c := p.dial()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if r := readResponse(t, bufio.NewReader(c), "GET"); r.code != 502 {
			t.Errorf("got %d, want 502", r.code)
		}
		c.Close()
		if ci := p.info(); ci.Retries != 0 {
			t.Errorf("ConnInfo.Retries = %d, want 0 (no endpoint was tried again)", ci.Retries)
		}
		if _, failed := d.seen(); !slices.EqualFunc(failed, [][]string{{}, {"dead"}}, slices.Equal) {
			t.Errorf("Failed reported %v, want [] then [dead]", failed)
		}
		if dead.Inflight() != 0 {
			t.Errorf("inflight %d, want 0", dead.Inflight())
		}
	})
}

// TestDeadPooledConnectionThenRefused: a GET sent on a pooled connection
// the endpoint closed while idle is sent again on a fresh connection; when
// that connect is refused too (the endpoint went away), it goes to another
// endpoint, as any failed connect does. A POST checks its pooled connection
// before it sends anything (and never sends on a dead one): its connect is
// then refused, and it goes to the other endpoint likewise.
func TestDeadPooledConnectionThenRefused(t *testing.T) {
	for _, method := range []string{"GET", "POST"} {
		t.Run(method, func(t *testing.T) {
			recA, recB := &bodyRecorder{name: "a"}, &bodyRecorder{name: "b"}
			a := startBackend(t, "a", recA)
			b := startBackend(t, "b", recB)
			d := &skipDirector{eps: []*upstream.Endpoint{a.ep, b.ep}}
			p := startProxy(t, &Config{Director: d, Retries: 3})
			c := p.dial()
			br := bufio.NewReader(c)
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			if r := readResponse(t, br, "GET"); r.code != 200 || r.body != "a" {
				t.Fatalf("first request: %d %q, want 200 a", r.code, r.body)
			}
			// a goes away: its pooled connection is closed, and connects to
			// it are refused from now on.
			a.srv.Close()
			waitFor(t, func() bool { return deadPooled(a.ep) })
			fmt.Fprintf(c, "%s / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", method)
			if r := readResponse(t, br, method); r.code != 200 || r.body != "b" {
				t.Errorf("got %d %q, want 200 b", r.code, r.body)
			}
			if picks, _ := d.seen(); !slices.Equal(picks, []string{"a", "a", "b"}) {
				t.Errorf("picks %v, want [a a b]", picks)
			}
			if sums := recB.bodies(); len(sums) != 1 || sums[0] != sha256.Sum256([]byte("hello")) {
				t.Errorf("b received %d bodies, want the body once", len(sums))
			}
			c.Close()
			if ci := p.info(); ci.Retries != 1 {
				t.Errorf("ConnInfo.Retries = %d, want 1", ci.Retries)
			}
			if a.ep.Inflight() != 0 || b.ep.Inflight() != 0 || a.ep.Conns() != 0 {
				t.Errorf("inflight a %d b %d, a conns %d; want 0 0 0", a.ep.Inflight(), b.ep.Inflight(), a.ep.Conns())
			}
		})
	}
}

// TestHalfClosedPooledConnection: an endpoint that shut down the sending
// side of a connection while it sat pooled, but keeps reading from it,
// never answers what is sent on it. A GET sent there is sent again on a
// fresh connection, as on one the endpoint closed, and well within the
// response timeout: the proxy notices the endpoint's FIN within
// closeCheckInterval of sending, though the wait for the answer does not
// start with a read.
func TestHalfClosedPooledConnection(t *testing.T) {
	var conns atomic.Int32
	halfClosed := make(chan struct{})
	addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		first := conns.Add(1) == 1
		readRequestHead(br)
		if !first {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh")
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
		c.(*net.TCPConn).CloseWrite()
		close(halfClosed)
		io.Copy(io.Discard, br) // reads on, answers nothing
	})
	ep := upstream.New("web", "a", addr)
	const responseTimeout = 3 * closeCheckInterval
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}, ResponseTimeout: responseTimeout})
	c := p.dial()
	br := bufio.NewReader(c)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := readResponse(t, br, "GET"); r.code != 200 || r.body != "first" {
		t.Fatalf("first request: %d %q, want 200 first", r.code, r.body)
	}
	<-halfClosed
	waitFor(t, func() bool { return deadPooled(ep) }) // the FIN arrived
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := readResponse(t, br, "GET"); r.code != 200 || r.body != "fresh" {
		t.Errorf("on a half-closed pooled connection: %d %q, want 200 fresh", r.code, r.body)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d endpoint connections, want 2", n)
	}
}

// TestSentRequestIsNotRetried: retries are for connects that fail. A
// request the endpoint received and dropped unanswered is not sent to
// another endpoint: a POST, or a request whose body went out, is answered
// 502 (a GET without a body is sent again to the same endpoint on a fresh
// connection, as without retries: TestNonIdempotentRequestIsNotReplayed).
func TestSentRequestIsNotRetried(t *testing.T) {
	for _, tt := range []struct{ name, req string }{
		{"POST", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"},
		{"POST with body", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"},
		{"PUT with body", "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var dropped atomic.Int64
			// flaky answers the first request of a connection and drops the
			// connection after reading the second.
			flaky := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
				for i := 0; ; i++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if i == 1 {
						dropped.Add(1)
						return
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nflaky")
				}
			})
			rec := &bodyRecorder{name: "other"}
			other := startBackend(t, "other", rec)
			fl := upstream.New("web", "flaky", flaky)
			d := &skipDirector{eps: []*upstream.Endpoint{fl, other.ep}}
			p := startProxy(t, &Config{Director: d, Retries: 3})
			c := p.dial()
			br := bufio.NewReader(c)
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			if r := readResponse(t, br, "GET"); r.code != 200 {
				t.Fatalf("first request: %d", r.code)
			}
			io.WriteString(c, tt.req)
			if r := readResponse(t, br, "POST"); r.code != 502 {
				t.Errorf("got %d %q, want 502", r.code, r.body)
			}
			if n := dropped.Load(); n != 1 {
				t.Errorf("flaky received the request %d times, want 1", n)
			}
			if n := len(rec.bodies()); n != 0 {
				t.Errorf("the other endpoint received %d requests, want 0", n)
			}
			c.Close()
			if ci := p.info(); ci.Retries != 0 {
				t.Errorf("ConnInfo.Retries = %d, want 0", ci.Retries)
			}
			if fl.Inflight() != 0 || other.ep.Inflight() != 0 {
				t.Errorf("inflight %d %d, want 0 0", fl.Inflight(), other.ep.Inflight())
			}
		})
	}
}

// TestRequestFailedReportsOnlyFailedEndpoints checks Failed on its own.
func TestRequestFailedReportsOnlyFailedEndpoints(t *testing.T) {
	a, b := upstream.New("web", "a", "127.0.0.1:1"), upstream.New("web", "b", "127.0.0.1:2")
	var r Request
	if r.Failed(a) || r.Failed(nil) {
		t.Error("a new Request reports a failure")
	}
	r.failed = append(r.failed, a)
	if !r.Failed(a) || r.Failed(b) {
		t.Errorf("Failed(a) %v Failed(b) %v, want true false", r.Failed(a), r.Failed(b))
	}
	r.forgetFailed()
	if r.Failed(a) || len(r.failed) != 0 || cap(r.failed) == 0 || r.failed[:1][0] != nil {
		t.Error("forgetFailed left the endpoint in the list")
	}
}
