package h2proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// ended is how a connection ServeConn served ended, and its record.
type ended struct {
	why  sluicev1.CloseReason
	info httpproxy.ConnInfo
}

// serveRecorded serves the first HTTP/1.x connection to a new loopback
// listener through this engine, to ep, and reports how it ended. It
// returns the listener's address and the engine's Upstream.
func serveRecorded(t *testing.T, ep *upstream.Endpoint) (string, <-chan ended, *Upstream) {
	t.Helper()
	return serveMetered(t, ep, nil)
}

// serveMetered is serveRecorded with m as the listener's meter.
func serveMetered(t *testing.T, ep *upstream.Endpoint, m *meter.Listener) (string, <-chan ended, *Upstream) {
	t.Helper()
	return serveWith(t, ep, m, false)
}

// serveWith is serveMetered for HTTP/2 connections (h2c with prior
// knowledge) when h2, else HTTP/1.x ones.
func serveWith(t *testing.T, ep *upstream.Endpoint, m *meter.Listener, h2 bool) (string, <-chan ended, *Upstream) {
	t.Helper()
	return serveConfig(t, &httpproxy.Config{Director: pickDirector{ep}, Meter: m}, h2)
}

// serveConfig is serveWith for a listener with cfg.
func serveConfig(t *testing.T, cfg *httpproxy.Config, h2 bool) (string, <-chan ended, *Upstream) {
	t.Helper()
	hs := httpproxy.NewServer(cfg, nil)
	up := NewUpstream(nil)
	t.Cleanup(up.Close)
	s := NewServer(hs, up, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan ended, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		info := httpproxy.ConnInfo{Start: time.Now()}
		why := s.ServeConn(c, netip.MustParseAddrPort(c.RemoteAddr().String()), netip.MustParseAddrPort(c.LocalAddr().String()), nil, h2, nil, &info)
		done <- ended{why, info}
	}()
	return ln.Addr().String(), done, up
}

// getTwiceAndClose sends two GETs on one connection to addr, wants each
// answered with status and the connection kept, and closes it.
func getTwiceAndClose(t *testing.T, addr string, status int) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i := range 2 {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != status || resp.Close {
			t.Fatalf("request %d: %v, %v; want a %d that keeps the connection", i, resp, err, status)
		}
		io.Copy(io.Discard, resp.Body)
	}
}

func waitEnded(t *testing.T, done <-chan ended) ended {
	t.Helper()
	select {
	case e := <-done:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("the connection was not served to its end")
	}
	return ended{}
}

// TestClientCloseIsRecorded: an HTTP/1.x connection its client closes
// after its requests is recorded as client_closed. net/http ends its read
// behind each request with a deadline in the past as the handler returns;
// that read's timeout used to be taken for the client's, in about half
// the runs.
func TestClientCloseIsRecorded(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") }))
	t.Cleanup(be.Close)
	for i := range 10 {
		addr, done, _ := serveRecorded(t, upstream.New("c", "e", be.Listener.Addr().String()))
		getTwiceAndClose(t, addr, 200)
		if e := waitEnded(t, done); e.why != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED || e.info.Requests != 2 {
			t.Fatalf("connection %d: closed for %v after %d requests, want client_closed after 2", i, e.why, e.info.Requests)
		}
	}
}

// TestRecordCountsFailedRequests: requests this engine answers with an
// error (here 502s, the endpoint refusing connections) keep the
// connection, and its record counts them with their reason, as the
// HTTP/1.1 engine's does; it closes as its client closed it.
func TestRecordCountsFailedRequests(t *testing.T) {
	addr, done, _ := serveRecorded(t, upstream.New("c", "e", loopback.FreeAddr(t)))
	getTwiceAndClose(t, addr, 502)
	e := waitEnded(t, done)
	if e.why != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED || e.info.Requests != 2 {
		t.Errorf("closed for %v after %d requests, want client_closed after 2", e.why, e.info.Requests)
	}
	if e.info.Failed != 2 || !slices.Equal(e.info.Failures.List(), []sluicev1.CloseReason{sluicev1.CloseReason_CLOSE_REASON_NO_ENDPOINT}) {
		t.Errorf("record: %d failed for %v; want 2 for [no_endpoint]", e.info.Failed, e.info.Failures.List())
	}
}

// TestFailedRequestsCountAsTheEndpoints5xx: a request the endpoint failed
// after it was sent (here it resets the connection) is answered 502 and
// counted among the endpoint's 5xx, as the HTTP/1.1 engine counts it: its
// clients got a 5xx. It is no connect error: the connect succeeded.
func TestFailedRequestsCountAsTheEndpoints5xx(t *testing.T) {
	resetting := loopback.Accept(t, func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})
	ep := upstream.New("c", "e", resetting)
	addr, done, _ := serveRecorded(t, ep)
	getTwiceAndClose(t, addr, 502)
	waitEnded(t, done)
	if st := ep.Stats(); st.Responses5xx != 2 || st.ConnectErrors != 0 {
		t.Errorf("the endpoint's counters: %d 5xx, %d connect errors; want 2 and 0", st.Responses5xx, st.ConnectErrors)
	}
}

// TestCutResponseIsRecorded: an endpoint that cuts its response short
// after the head (here it closes in a chunked body) fails the request
// where the client can see it, and in the connection's record: an
// HTTP/1.x connection ends, as server_closed, as the HTTP/1.1 engine's
// does, and an HTTP/2 one, which goes on, counts a failed request with
// that reason. The records used to say client_closed and nothing failed.
func TestCutResponseIsRecorded(t *testing.T) {
	ep := upstream.New("c", "e", loopback.Serve(t, func(c net.Conn) {
		defer c.Close()
		http.ReadRequest(bufio.NewReader(c))
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
	}))
	for _, h2 := range []bool{false, true} {
		addr, done, _ := serveWith(t, ep, nil, h2)
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
		if h2 {
			var p http.Protocols
			p.SetUnencryptedHTTP2(true)
			client.Transport = &http.Transport{Protocols: &p}
		}
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatalf("h2 %v: %v", h2, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("h2 %v: read %q whole, want the body cut short", h2, body)
		}
		client.CloseIdleConnections()
		e := waitEnded(t, done)
		want, failed := sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED, uint64(0)
		if h2 {
			want, failed = sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED, 1
		}
		if e.why != want || e.info.Requests != 1 || e.info.Failed != failed ||
			failed > 0 && !slices.Equal(e.info.Failures.List(), []sluicev1.CloseReason{sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED}) {
			t.Errorf("h2 %v: ended %v after %d requests, %d failed for %v; want %v, 1 request, %d failed (server_closed)",
				h2, e.why, e.info.Requests, e.info.Failed, e.info.Failures.List(), want, failed)
		}
	}
}

// TestConnectTimeObserved: a request this engine sends on a new endpoint
// connection has that connect observed in the listener's
// connect_duration, as the HTTP/1.1 engine observes its own, to HTTP/1.1
// and HTTP/2 endpoints alike; one on a pooled connection observes none.
// A listener that may route to an http2 cluster observed none before.
func TestConnectTimeObserved(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		ep := backendOf(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") }, h2)
		m := meter.NewListener("web", nil)
		client, _ := serveHTTP1(t, engine(t, &httpproxy.Config{Director: pickDirector{ep}, Meter: m}, h2))
		go io.WriteString(client, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
		br := bufio.NewReader(client)
		for i := range 2 {
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("h2 %v, request %d: %v %v", h2, i+1, resp, err)
			}
			io.Copy(io.Discard, resp.Body)
		}
		client.Close()
		if _, n, sum := m.Connect.Read(); n != 1 || sum <= 0 {
			t.Errorf("h2 %v: %d connects observed (%v s in all), want the first request's one", h2, n, sum)
		}
	}
}

// TestClientGoAwayIsRecorded: an HTTP/2 client that ends its connection
// with GOAWAY (nghttp after its last stream, Go's client as it closes) is
// recorded as client_closed, though net/http closes the socket itself
// then, before the client's close could reach a read: that close was
// taken for net/http's own idle timeout (client_timeout).
func TestClientGoAwayIsRecorded(t *testing.T) {
	ep := backendOf(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") }, false)
	addr, done, _ := serveWith(t, ep, nil, true)
	cl := dialH2(t, addr)
	cl.get(1)
	if got := cl.wait(1); got.status != "200" {
		t.Fatalf("stream 1: %v, want 200", got)
	}
	if err := cl.fr.WriteGoAway(1, http2.ErrCodeNo, nil); err != nil {
		t.Fatal(err)
	}
	// The client keeps its end open: the node closes the connection.
	e := waitEnded(t, done)
	if e.why != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED || e.info.Requests != 1 {
		t.Errorf("ended %v after %d requests, want client_closed after 1", e.why, e.info.Requests)
	}
}

// TestCutGRPCCallSaysWhy: a gRPC call whose endpoint cut its response
// short gets UNAVAILABLE in the trailers with the node's word for why,
// and its connection's record counts it failed as server_closed.
func TestCutGRPCCallSaysWhy(t *testing.T) {
	ep := upstream.New("c", "e", loopback.Serve(t, func(c net.Conn) {
		defer c.Close()
		http.ReadRequest(bufio.NewReader(c))
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n\x00\x00\x00\x00\x00\r\n")
	}))
	addr, done, _ := serveWith(t, ep, nil, true)
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	client := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	req, _ := http.NewRequest("POST", "http://"+addr+"/pkg.Svc/Call", strings.NewReader("\x00\x00\x00\x00\x00"))
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := resp.Trailer.Get("Grpc-Status") + " " + resp.Trailer.Get("Grpc-Message"); got != "14 the endpoint cut its response short" {
		t.Errorf("trailers say %q, want 14 and the node's word", got)
	}
	tr.CloseIdleConnections()
	if e := waitEnded(t, done); e.info.Failed != 1 || !slices.Equal(e.info.Failures.List(), []sluicev1.CloseReason{sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED}) {
		t.Errorf("record: %d failed for %v, want 1 for [server_closed]", e.info.Failed, e.info.Failures.List())
	}
}

// answerDirector answers every request with a, with a Retry-After of
// retry (none for 0), or finds no endpoint for it when a is nil.
type answerDirector struct {
	a     *httpproxy.Answer
	retry time.Duration
}

func (d answerDirector) Pick(r *httpproxy.Request) (*upstream.Endpoint, time.Duration, error) {
	if d.a == nil {
		return nil, 0, httpproxy.ErrNoEndpoint
	}
	r.Respond(d.a)
	r.RetryAfter(d.retry)
	return nil, 0, nil
}

// TestOwnAnswersAreMetered: an answer of the proxy's own over HTTP/2 (a
// rule's page, the 503 of no endpoint) is metered, and so access-logged,
// as a relayed response is: its status, and the bytes of the body the
// client got, none for HEAD. They were logged with no bytes at all. A
// rate limit's Retry-After comes through as over HTTP/1.1.
func TestOwnAnswersAreMetered(t *testing.T) {
	page, err := httpproxy.NewResponse(httpproxy.Response{Status: 403, Body: []byte("not from here\n")})
	if err != nil {
		t.Fatal(err)
	}
	slow, err := httpproxy.NewResponse(httpproxy.Response{Status: 429, Body: []byte("slow down\n")})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		a      *httpproxy.Answer
		retry  time.Duration
		method string
		status int
	}{
		{"a rule's page", page, 0, "GET", 403},
		{"a rule's page, to HEAD", page, 0, "HEAD", 403},
		{"no endpoint", nil, 0, "GET", 503},
		{"a rate limit's, with Retry-After", slow, 2500 * time.Millisecond, "GET", 429},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log logged
			addr, _, _ := serveConfig(t, &httpproxy.Config{Director: answerDirector{tc.a, tc.retry}, Meter: meter.NewListener("web", &log)}, true)
			var p http.Protocols
			p.SetUnencryptedHTTP2(true)
			tr := &http.Transport{Protocols: &p}
			defer tr.CloseIdleConnections()
			req, _ := http.NewRequest(tc.method, "http://"+addr+"/x", nil)
			resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: tr}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != tc.status || resp.ProtoMajor != 2 {
				t.Fatalf("%s %d, %v; want HTTP/2 %d", resp.Proto, resp.StatusCode, err, tc.status)
			}
			want := ""
			if tc.retry != 0 {
				want = "3" // 2.5s, rounded up
			}
			if got := resp.Header.Get("Retry-After"); got != want {
				t.Errorf("Retry-After %q, want %q", got, want)
			}
			if (tc.method == "HEAD") != (len(body) == 0) {
				t.Fatalf("a body of %d bytes to %s", len(body), tc.method)
			}
			// The meter has the exchange once its handler returned, which
			// may be after the client read the end of the stream.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
				log.mu.Lock()
				n := len(log.xs)
				log.mu.Unlock()
				if n > 0 || time.Now().After(deadline) {
					break
				}
			}
			log.mu.Lock()
			defer log.mu.Unlock()
			if len(log.xs) != 1 || log.xs[0].Status != tc.status || log.xs[0].BytesOut != uint64(len(body)) || log.xs[0].Proto != meter.ProtoHTTP2 {
				t.Errorf("logged %+v\nwant one HTTP/2 %d with %d bytes out, the body the client got", log.xs, tc.status, len(body))
			}
		})
	}
}

// idsLog keeps the ids of the exchanges a meter logs, copied while valid.
type idsLog struct {
	mu  sync.Mutex
	ids []string
}

func (l *idsLog) Sample() bool { return true }
func (l *idsLog) Log(_ string, x *meter.Exchange) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ids = append(l.ids, string(x.RequestID))
}

// TestRequestIDsOverHTTP2: over HTTP/2 as over HTTP/1.1, the endpoint
// gets one new id in place of the one a client that is no trusted peer
// sent, and the meter logs it.
func TestRequestIDsOverHTTP2(t *testing.T) {
	got := make(chan []string, 1)
	ep := backendOf(t, func(w http.ResponseWriter, r *http.Request) { got <- r.Header.Values("X-Request-Id") }, false)
	var log idsLog
	addr, _, _ := serveConfig(t, &httpproxy.Config{Director: pickDirector{ep}, RequestID: "X-Request-ID", Meter: meter.NewListener("web", &log)}, true)
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Header.Set("X-Request-ID", "spoofed")
	resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ids := <-got
	if resp.ProtoMajor != 2 || len(ids) != 1 || len(ids[0]) != 36 || ids[0] == "spoofed" {
		t.Fatalf("HTTP/%d: the endpoint got X-Request-ID %q, want one new id", resp.ProtoMajor, ids)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		log.mu.Lock()
		logged := slices.Clone(log.ids)
		log.mu.Unlock()
		if len(logged) > 0 || time.Now().After(deadline) {
			if len(logged) != 1 || logged[0] != ids[0] {
				t.Errorf("logged ids %q, want the endpoint's %q", logged, ids[0])
			}
			break
		}
	}
}

// idPathDirector sends /edited to ep with response edits that set the id
// field, answers /deny with deny and /none with no endpoint, and sends
// anything else to ep.
type idPathDirector struct {
	ep    *upstream.Endpoint
	deny  *httpproxy.Answer
	edits *httpproxy.HeaderEdits
}

func (d idPathDirector) Pick(r *httpproxy.Request) (*upstream.Endpoint, time.Duration, error) {
	switch string(r.Path()) {
	case "/deny":
		r.Respond(d.deny)
		return nil, 0, nil
	case "/none":
		return nil, 0, httpproxy.ErrNoEndpoint
	case "/edited":
		r.EditResponse(d.edits)
	}
	d.ep.Acquire()
	return d.ep, time.Second, nil
}

// TestRequestIDsInResponsesOverHTTP2: with RequestIDInResponse, an HTTP/2
// client gets the id the endpoint got, in place of the endpoint's own,
// unless a rule's response edits set the field; the proxy's own answers
// (a rule's page, a 503, a gRPC call's status) carry the request's id,
// and a request refused before it was given one (431) none.
func TestRequestIDsInResponsesOverHTTP2(t *testing.T) {
	got := make(chan string, 1)
	ep := backendOf(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("X-Request-Id")
		w.Header()["x-request-id"] = []string{"endpoint-own"}
		w.Header().Add("X-Request-Id", "two")
	}, false)
	deny, err := httpproxy.NewResponse(httpproxy.Response{Status: 403, Body: []byte("no\n")})
	if err != nil {
		t.Fatal(err)
	}
	edits, err := httpproxy.NewHeaderEdits(nil, []httpproxy.Field{{Name: "X-Request-ID", Value: "ruled"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr, _, _ := serveConfig(t, &httpproxy.Config{Director: idPathDirector{ep, deny, edits}, RequestID: "X-Request-ID", RequestIDInResponse: true, MaxHeaderBytes: 1024}, true)
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	defer tr.CloseIdleConnections()
	seen := map[string]bool{}
	for _, tc := range []struct {
		path, contentType string
		status            int
		grpcStatus        string
	}{
		{"/", "", 200, ""},
		{"/edited", "", 200, ""},
		{"/deny", "", 403, ""},
		{"/none", "", 503, ""},
		{"/none", "application/grpc", 200, "14"},
		{"/deny", "application/grpc", 200, "7"},
		{"/big", "", 431, ""}, // refused before it has an id: none, not the last one's
	} {
		req, _ := http.NewRequest("POST", "http://"+addr+tc.path, strings.NewReader("x"))
		if tc.contentType != "" {
			req.Header.Set("Content-Type", tc.contentType)
		}
		if tc.path == "/big" {
			req.Header.Set("X-Big", strings.Repeat("b", 2000))
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ids := resp.Header.Values("X-Request-Id")
		var want string
		switch {
		case tc.path == "/edited":
			<-got
			want = "ruled"
		case tc.path == "/":
			want = <-got
		case tc.path == "/big":
			want = ""
		case len(ids) == 1 && len(ids[0]) == 36 && !seen[ids[0]]:
			want = ids[0] // a new id, made for the proxy's answer
		default:
			want = "a new id"
		}
		seen[want] = true
		if resp.ProtoMajor != 2 || resp.StatusCode != tc.status || resp.Header.Get("Grpc-Status") != tc.grpcStatus || strings.Join(ids, ",") != want {
			t.Errorf("%s %s: HTTP/%d %d, grpc-status %q, X-Request-Id %q; want %d, grpc-status %q, X-Request-Id %q",
				tc.path, tc.contentType, resp.ProtoMajor, resp.StatusCode, resp.Header.Get("Grpc-Status"), ids, tc.status, tc.grpcStatus, want)
		}
	}
}
