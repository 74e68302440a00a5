package httpproxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
)

// An endpoint's counters tell what it was sent and what it answered: one
// request per exchange, every byte each way (large bodies spliced or
// copied), and its 5xx answers apart from the others.
func TestEndpointStatsCountExchanges(t *testing.T) {
	eachSpliceMode(t, endpointStatsCountExchanges)
}

func endpointStatsCountExchanges(t *testing.T) {
	b := startBackend(t, "b1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		size, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("X-Got", strconv.FormatInt(n, 10))
		w.Write(bytes.Repeat([]byte("x"), size))
	}))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	client := keepAliveClient()
	do := func(method, path string, body []byte) int {
		req, _ := http.NewRequestWithContext(testCtx(t), method, "http://"+p.addr+path, bytes.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	const up, down = 3 << 20, 2 << 20 // past spliceMin: the large-body path
	if code := do("POST", "/?n="+strconv.Itoa(down), make([]byte, up)); code != 200 {
		t.Fatalf("status %d", code)
	}
	if code := do("GET", "/?n=10", nil); code != 200 {
		t.Fatalf("status %d", code)
	}
	if code := do("GET", "/fail", nil); code != 503 {
		t.Fatalf("status %d, want the endpoint's 503", code)
	}
	st := b.ep.Stats()
	if st.Requests != 3 {
		t.Errorf("Requests = %d, want 3", st.Requests)
	}
	if st.Responses5xx != 1 {
		t.Errorf("Responses5xx = %d, want 1", st.Responses5xx)
	}
	if st.ConnectErrors != 0 {
		t.Errorf("ConnectErrors = %d, want 0", st.ConnectErrors)
	}
	// Heads add some hundreds of bytes to the bodies.
	if st.BytesOut < up || st.BytesOut > up+2000 {
		t.Errorf("BytesOut = %d, want the %d-byte upload plus heads", st.BytesOut, up)
	}
	if st.BytesIn < down+10 || st.BytesIn > down+10+2000 {
		t.Errorf("BytesIn = %d, want the %d-byte download plus heads", st.BytesIn, down+10)
	}
}

// A request the endpoint failed after it was sent, which the client got
// the proxy's 502 or 504 for, counts among the endpoint's 5xx: its clients
// got a 5xx (a canary's error rate, the dashboard and top count them). Its
// consecutive_5xx streak does not move: that counts its own answers.
func TestEndpointStatsCountFailedRequests(t *testing.T) {
	addr := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		switch req.URL.Path {
		case "/reset":
			c.(*net.TCPConn).SetLinger(0)
		case "/hang":
			io.Copy(io.Discard, br) // answers nothing until the proxy gives up
		case "/bad":
			io.WriteString(c, "HTTP/1.1 2OO OK\r\n\r\n")
		}
	})
	ep := upstream.New("web", "e", addr)
	var ejected atomic.Int32
	ep.SetOutlierPolicy(&upstream.OutlierPolicy{Responses5xx: 1, Outlier: func(*upstream.Endpoint, upstream.Cause) { ejected.Add(1) }})
	// /reset and /bad fail as soon as the endpoint reads them: through a
	// proxy that waits long enough for any machine. /hang, which it never
	// answers, through one that soon gives up.
	patient := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}, ResponseTimeout: defaultTestTimeout})
	hasty := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}, ResponseTimeout: 200 * time.Millisecond})
	for i, tc := range []struct {
		path string
		code int
		p    *proxy
	}{{"/reset", 502, patient}, {"/hang", 504, hasty}, {"/bad", 502, patient}} {
		resp, err := http.Get("http://" + tc.p.addr + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s: status %d, want the proxy's %d", tc.path, resp.StatusCode, tc.code)
		}
		if st := ep.Stats(); st.Responses5xx != uint64(i+1) || st.ConnectErrors != 0 {
			t.Errorf("after %s: %d 5xx, %d connect errors; want %d and 0", tc.path, st.Responses5xx, st.ConnectErrors, i+1)
		}
	}
	if n := ejected.Load(); n != 0 {
		t.Errorf("ejected %d times for the proxy's own answers, want 0", n)
	}
}

// A connect that fails is counted against the endpoint it was for.
func TestEndpointStatsCountConnectErrors(t *testing.T) {
	dead := upstream.New("web", "dead", loopback.FreeAddr(t))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{dead}}})
	resp, err := keepAliveClient().Get("http://" + p.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 && resp.StatusCode != 502 {
		t.Fatalf("status %d, want the proxy's own 502 or 503", resp.StatusCode)
	}
	if st := dead.Stats(); st.ConnectErrors != 1 || st.Requests != 1 {
		t.Errorf("Stats = %+v, want 1 request, 1 connect error", st)
	}
}

// meterLog keeps the exchanges a listener's meter logs.
type meterLog struct {
	mu sync.Mutex
	xs []meter.Exchange
}

func (l *meterLog) Sample() bool { return true }
func (l *meterLog) Log(_ string, x *meter.Exchange) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.xs = append(l.xs, *x)
}

// Requests pipelined in one write are each logged with their own bytes
// in, not the first with all of them and the rest with none.
func TestPipelinedRequestsLogTheirOwnBytes(t *testing.T) {
	b := startBackend(t, "b1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	log := &meterLog{}
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}, Meter: meter.NewListener("l", log)})
	c := p.dial()
	first, second := "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", "POST /bb HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
	io.WriteString(c, first+second)
	br := bufio.NewReader(c)
	readResponse(t, br, "GET")
	readResponse(t, br, "POST")
	c.Close()
	waitFor(t, func() bool { log.mu.Lock(); defer log.mu.Unlock(); return len(log.xs) == 2 })
	for i, want := range []int{len(first), len(second)} {
		if got := log.xs[i].BytesIn; got != uint64(want) {
			t.Errorf("request %d logged %d bytes in, want %d", i+1, got, want)
		}
	}
}

// A connection is counted out of the listener's open connections before
// its client sees it close and before its record is made: a record, or a
// closed socket, never goes with a connection still counted open.
func TestClosedConnectionCountedOutFirst(t *testing.T) {
	b := startBackend(t, "b1", nameHandler("b1"))
	lm := meter.NewListener("l", nil)
	var activeAtRecord atomic.Int64
	p := startProxyAs(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}, Meter: lm}, false, func(*ConnInfo) {
		activeAtRecord.Store(lm.Counts().Active)
	})
	c := p.dial()
	io.WriteString(c, "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(c)
	if r := readResponse(t, br, "GET"); r.body != "b1 /x" {
		t.Fatalf("got %q, want %q", r.body, "b1 /x")
	}
	expectEOF(t, br)
	if n := lm.Counts().Active; n != 0 {
		t.Errorf("after the client saw the close: %d connections counted open, want 0", n)
	}
	p.info() // the record was made
	if n := activeAtRecord.Load(); n != 0 {
		t.Errorf("when the record was made: %d connections counted open, want 0", n)
	}
}
