package h2proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/meter"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// logged keeps the exchanges a meter logs.
type logged struct {
	mu sync.Mutex
	xs []meter.Exchange
}

func (l *logged) Sample() bool { return true }

func (l *logged) Log(_ string, x *meter.Exchange) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.xs = append(l.xs, *x)
}

// TestRefusedHTTP1Request: on a listener whose HTTP/1.1 connections this
// engine serves (Translate), a request head net/http refuses before any
// handler sees it is answered by net/http, and then recorded as the
// HTTP/1.1 engine records its own refusals: the connection ends as
// bad_request, and the listener's meter (and access log) gets a request
// with the status the client got, after the requests served before it.
func TestRefusedHTTP1Request(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		status     int
	}{
		{"a header line without a colon", "GET /bad HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n", 400},
		// Refused as the HTTP/1.1 engine refuses it (h1Screen): 400, where
		// net/http alone answers 501.
		{"a transfer coding it does not know", "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400},
		{"a head past MaxHeaderBytes", "GET /bad HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", 2<<20) + "\r\n\r\n", 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log logged
			m := meter.NewListener("web", &log)
			ep := backendOf(t, func(http.ResponseWriter, *http.Request) {}, false)
			client, ended := serveHTTP1(t, engine(t, &httpproxy.Config{Director: pickDirector{ep}, Meter: m}, false))
			go io.WriteString(client, "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n"+tc.head)
			br := bufio.NewReader(client)
			var body []byte
			for i, want := range []int{200, tc.status} {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("response %d: %v", i+1, err)
				}
				body, _ = io.ReadAll(resp.Body)
				if resp.StatusCode != want {
					t.Fatalf("response %d: %s, want %d", i+1, resp.Status, want)
				}
			}
			client.Close()
			select {
			case why := <-ended:
				if why != sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST {
					t.Errorf("the connection ended as %v, want BAD_REQUEST", why)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the connection did not end")
			}
			log.mu.Lock()
			defer log.mu.Unlock()
			if len(log.xs) != 2 || log.xs[0].Status != 200 || log.xs[1].Status != tc.status || log.xs[1].Cause != sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST ||
				log.xs[1].Proto != meter.ProtoHTTP11 || log.xs[1].Client.Port() != 50000 || log.xs[1].BytesIn != 0 || log.xs[1].BytesOut != uint64(len(body)) {
				t.Errorf("logged %+v\nwant the 200, then the %d with cause BAD_REQUEST, its client, and %d bytes out (the answer's body)", log.xs, tc.status, len(body))
			}
			if c := m.Counts(); c.Requests[meter.ClassOf(tc.status)] != 1 {
				t.Errorf("the listener counted %v, want one %d", c.Requests, tc.status)
			}
		})
	}
}

// discardConn is a connection whose writes go nowhere.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }

// TestRefusalIsTheLastWrite: a response body that starts a write with
// what net/http's refusals start with is no refusal when more is written
// on the connection after it; net/http's own refusal is its last write.
func TestRefusalIsTheLastWrite(t *testing.T) {
	answer := "HTTP/1.1 400 Bad Request" + refusalHeaders + "400 Bad Request"
	c := &countConn{Conn: discardConn{}, screen: &h1Screen{}}
	c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 103\r\n\r\n"))
	c.Write([]byte(answer)) // the body
	if r := c.refusal(); r == nil || r.status != 400 || r.body != uint64(len("400 Bad Request")) {
		t.Fatalf("refusal as the last write: %+v, want status 400 and its body", r)
	}
	c.Write([]byte("HTTP/1.1 204 No Content\r\n\r\n"))
	if r := c.refusal(); r != nil {
		t.Errorf("refusal with a response after it: %+v, want none", r)
	}
	h2 := &countConn{Conn: discardConn{}}
	h2.Write([]byte(answer))
	if r := h2.refusal(); r != nil {
		t.Errorf("an HTTP/2 connection noted a refusal: %+v", r)
	}
}
