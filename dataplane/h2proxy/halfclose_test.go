package h2proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestHalfCloseStillAnswered: a client of a listener whose HTTP/1.1
// connections this engine serves (Translate) that half-closes its
// connection after its request (nc -N, many scripts) gets the endpoint's
// answer, whole, and then the connection closes, as on the HTTP/1.1
// engine. net/http alone takes the end of the client's bytes for a client
// gone: it cancels the request and answers an empty 200 in its place, or
// cuts the answer short.
func TestHalfCloseStillAnswered(t *testing.T) {
	ep := backendOf(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		time.Sleep(200 * time.Millisecond) // the half-close comes first
		w.Header().Set("Content-Length", "20")
		io.WriteString(w, "0123456789")
		w.(http.Flusher).Flush()
		time.Sleep(200 * time.Millisecond)
		io.WriteString(w, strings.ToUpper(string(b))+strings.Repeat("!", 10-len(b)))
	}, false)
	s := engine(t, &httpproxy.Config{Director: pickDirector{ep}}, false)
	for _, req := range []string{
		"GET /a HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nbye",
	} {
		client, ended := serveTCP(t, s)
		io.WriteString(client, req)
		client.(*net.TCPConn).CloseWrite()
		br := bufio.NewReader(client)
		for i := range strings.Count(req, "HTTP/1.1\r\n") {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%q: response %d: %v", req, i+1, err)
			}
			body, err := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || len(body) != 20 || err != nil {
				t.Errorf("%q: response %d: %s %q, %v; want the endpoint's 200 and its 20 bytes", req, i+1, resp.Status, body, err)
			}
		}
		if n, err := br.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("%q: after the answers: %d bytes, %v; want the connection closed", req, n, err)
		}
		if why := <-ended; why != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED {
			t.Errorf("%q: the connection ended as %v, want CLIENT_CLOSED", req, why)
		}
	}
}

// serveTCP has s serve one HTTP/1.x client connection (serving) over
// loopback TCP, and returns the client's end (closed when the test ends,
// and deadlined 10 s from now) and the close reason ServeConn returns once
// the connection ends.
func serveTCP(t *testing.T, s *Server) (net.Conn, <-chan sluicev1.CloseReason) {
	t.Helper()
	ended := make(chan sluicev1.CloseReason, 1)
	client, err := net.Dial("tcp", loopback.Serve(t, serving(s, ended)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	client.SetDeadline(time.Now().Add(10 * time.Second))
	return client, ended
}

// abortDirector picks ep for every request, with abort_on_close.
type abortDirector struct{ ep *upstream.Endpoint }

func (d abortDirector) Pick(r *httpproxy.Request) (*upstream.Endpoint, time.Duration, error) {
	r.AbortOnClose()
	d.ep.Acquire()
	return d.ep, time.Second, nil
}

// TestHalfCloseWithAbortOnClose: with abort_on_close, a request whose
// client closes its connection while the endpoint works on it is given
// up there, as on the HTTP/1.1 engine: the endpoint's request ends, and
// the connection is recorded client_closed. Without the option the
// client's answer comes (TestHalfCloseStillAnswered).
func TestHalfCloseWithAbortOnClose(t *testing.T) {
	gone := make(chan struct{})
	ep := backendOf(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			close(gone)
		case <-time.After(5 * time.Second):
		}
	}, false)
	client, ended := serveTCP(t, engine(t, &httpproxy.Config{Director: abortDirector{ep}}, false))
	io.WriteString(client, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(100 * time.Millisecond) // at the endpoint
	client.(*net.TCPConn).CloseWrite()
	select {
	case <-gone:
	case <-time.After(3 * time.Second):
		t.Fatal("the endpoint's request went on after its client closed")
	}
	if why := <-ended; why != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED {
		t.Errorf("the connection ended as %v, want CLIENT_CLOSED", why)
	}
}
