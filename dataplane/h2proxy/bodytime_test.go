package h2proxy

import (
	"bufio"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestHTTP1BodyHeldBack: on a listener whose HTTP/1.1 connections this
// engine serves (Translate), a client that holds back the body it declared
// does not hold the connection, as on the HTTP/1.1 engine: a body that
// pauses longer than idle_timeout gets 408, one declared over
// max_request_body_bytes gets 413 without waiting for it, and the
// connection closes at once; after an answer that would keep it (a 503),
// once idle_timeout passed without the body. net/http alone would wait for
// the body (to reuse the connection) as long as the client likes.
func TestHTTP1BodyHeldBack(t *testing.T) {
	const idle = 300 * time.Millisecond
	for _, tc := range []struct {
		name, request string
		noEndpoint    bool
		status        int
		text          string
		why           sluicev1.CloseReason
	}{
		{"a body that stops", "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc", false,
			408, "request body not received in time\n", sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT},
		{"a body declared too large, not sent", "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n", false,
			413, "request body too large\n", sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST},
		// Answered without reading the body: net/http reads it before the
		// answer goes, to reuse the connection, for idle_timeout at most,
		// and then closes it: the client's timeout.
		{"a body not sent, answered 503", "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n", true,
			503, "no endpoint available\n", sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := meter.NewListener("web", nil)
			var d httpproxy.Director = pickDirector{backendOf(t, discardBody, false)}
			if tc.noEndpoint {
				d = noEndpoint{}
			}
			client, ended := serveHTTP1(t, engine(t, &httpproxy.Config{Director: d, Meter: m,
				IdleTimeout: idle, MaxRequestBodyBytes: 1000}, false))
			go io.WriteString(client, tc.request) // and nothing more: the client waits
			sent := time.Now()
			br := bufio.NewReader(client)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || string(body) != tc.text {
				t.Fatalf("got %s %q, want %d %q", resp.Status, body, tc.status, tc.text)
			}
			// The connection closes, without the client closing it.
			if n, err := br.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("after the answer: read %d bytes, %v; want the connection closed", n, err)
			}
			if took := time.Since(sent); took > 5*time.Second {
				t.Errorf("the connection closed %v after the request", took)
			}
			select {
			case why := <-ended:
				if why != tc.why {
					t.Errorf("the connection ended as %v, want %v", why, tc.why)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("ServeConn did not return")
			}
			if c := m.Counts(); c.Requests[meter.ClassOf(tc.status)] != 1 {
				t.Errorf("the listener counted %v, want one %d", c.Requests, tc.status)
			}
		})
	}
}

// discardBody is an endpoint's handler that reads the request's body and
// answers 200.
func discardBody(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }

// noEndpoint is a Director that finds no endpoint.
type noEndpoint struct{}

func (noEndpoint) Pick(*httpproxy.Request) (*upstream.Endpoint, time.Duration, error) {
	return nil, 0, httpproxy.ErrNoEndpoint
}

// TestHTTP2BodyHeldBack: an HTTP/2 stream whose body pauses longer than
// idle_timeout gets 408, as over HTTP/1.1: Go's HTTP/2 server has no
// bound of its own on a stream's body.
func TestHTTP2BodyHeldBack(t *testing.T) {
	const idle = 300 * time.Millisecond
	ep := backendOf(t, discardBody, false)
	addr := serveOne(t, engine(t, &httpproxy.Config{Director: pickDirector{ep}, IdleTimeout: idle}, false))

	body, stall := io.Pipe()
	defer stall.Close()
	go stall.Write([]byte("abc")) // and nothing more
	resp := postH2C(t, "http://"+addr+"/up", body)
	got, _ := io.ReadAll(resp.Body)
	if resp.ProtoMajor != 2 || resp.StatusCode != 408 || string(got) != "request body not received in time\n" {
		t.Errorf("got %s %s %q, want HTTP/2 408 \"request body not received in time\\n\"", resp.Proto, resp.Status, got)
	}
}

// TestHTTP2StreamingClientMayPause: once the response started, the body's
// pauses are not bounded by idle_timeout: a bidirectional stream (gRPC's)
// whose client is quiet for more than twice that, while the endpoint
// answers, goes on.
func TestHTTP2StreamingClientMayPause(t *testing.T) {
	// Long enough that the response head is relayed before the first
	// pause could time out, on a busy machine too.
	const idle = time.Second
	ep := backendOf(t, func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		w.WriteHeader(200)
		rc.Flush()
		buf := make([]byte, 64)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				w.Write(buf[:n])
				rc.Flush()
			}
			if err != nil {
				return
			}
		}
	}, true)
	addr := serveOne(t, engine(t, &httpproxy.Config{Director: pickDirector{ep}, IdleTimeout: idle}, true))

	body, send := io.Pipe()
	go func() {
		send.Write([]byte("one "))
		time.Sleep(2*idle + idle/2) // quiet, while the response is open
		send.Write([]byte("two"))
		send.Close()
	}()
	resp := postH2C(t, "http://"+addr+"/chat", body)
	got, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(got) != "one two" || err != nil {
		t.Errorf("got %s %q (%v), want 200 and the stream echoed whole, \"one two\"", resp.Status, got, err)
	}
}
