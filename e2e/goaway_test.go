package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawH2 is an h2c client that writes and reads frames itself, so a test
// sees the GOAWAY frames a client library would hide.
type rawH2 struct {
	t  *testing.T
	c  net.Conn
	fr *http2.Framer
}

func dialRawH2(t *testing.T, addr string) *rawH2 {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	h := &rawH2{t: t, c: c, fr: http2.NewFramer(c, c)}
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return h
}

// get opens stream id with a GET of path.
func (h *rawH2) get(id uint32, path string) {
	h.t.Helper()
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "e2e"}, {":path", path}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		h.t.Fatal(err)
	}
}

// rawEvents is what the server sent, in order, up to a stop.
type rawEvents struct {
	goaway    *http2.GoAwayFrame
	goawayAt  int // events before the GOAWAY
	events    int
	body      map[uint32]string
	ended     map[uint32]bool
	closedErr error
}

// read reads frames until stop says enough (or the connection ends, or
// testTimeout), acknowledging SETTINGS and PINGs.
func (h *rawH2) read(ev *rawEvents, stop func(*rawEvents) bool) {
	h.t.Helper()
	if ev.body == nil {
		ev.body, ev.ended = map[uint32]string{}, map[uint32]bool{}
	}
	for !stop(ev) {
		f, err := h.fr.ReadFrame()
		if err != nil {
			ev.closedErr = err
			return
		}
		ev.events++
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				h.fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			ev.goaway, ev.goawayAt = f, ev.events
		case *http2.DataFrame:
			ev.body[f.StreamID] += string(f.Data())
			if f.StreamEnded() {
				ev.ended[f.StreamID] = true
			}
		case *http2.HeadersFrame:
			if f.StreamEnded() {
				ev.ended[f.StreamID] = true
			}
		}
	}
}

// startH2C starts a control plane, a node and a backend behind one h2c
// listener with the given http options, and returns the backend, the
// listener's address and the node.
func startH2C(t *testing.T, http string) (*backend, string, *dataplane.Dataplane) {
	t.Helper()
	c := startCP(t, t.TempDir(), "")
	b := startBackend(t, "b")
	dp := startNode(t, c.addr, "node-1")
	listen := freeAddr(t)
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    endpoints: [ { name: b, address: %s } ]
listeners:
  - name: h2c
    address: %s
    protocol: HTTP
    default_cluster: web
    http: { h2c: true, %s }
`, b.addr, listen, http)))
	return b, listen, dp
}

// TestHTTP2MaxConnectionAge: an HTTP/2 connection older than
// max_connection_age gets GOAWAY (NO_ERROR) while a stream is in flight;
// that stream completes, then the connection closes, and the next request
// goes on a new connection.
func TestHTTP2MaxConnectionAge(t *testing.T) {
	b, listen, _ := startH2C(t, "max_connection_age: 300ms")

	h := dialRawH2(t, listen)
	h.get(1, "/slow")
	var ev rawEvents
	h.read(&ev, func(ev *rawEvents) bool { return ev.goaway != nil })
	if ev.goaway == nil {
		t.Fatalf("no GOAWAY past max_connection_age: %v", ev.closedErr)
	}
	if ev.goaway.ErrCode != http2.ErrCodeNo || ev.goaway.LastStreamID < 1 {
		t.Errorf("GOAWAY %v last stream %d, want NO_ERROR covering stream 1", ev.goaway.ErrCode, ev.goaway.LastStreamID)
	}
	if ev.ended[1] {
		t.Fatalf("stream 1 ended before the GOAWAY")
	}
	close(b.release)
	h.read(&ev, func(ev *rawEvents) bool { return ev.closedErr != nil })
	if !ev.ended[1] || ev.body[1] != "b" {
		t.Errorf("the stream in flight at GOAWAY: ended %v, body %q; want its whole answer", ev.ended[1], ev.body[1])
	}

	if !errors.Is(ev.closedErr, io.EOF) {
		t.Errorf("after its last stream the connection ended with %v, want the server's close (EOF)", ev.closedErr)
	}
	// The next request, on a new connection, is served.
	if got := h2Get(t, h2Client(true), "http://"+listen+"/"); got.proto != 2 || got.body != "b" {
		t.Errorf("request after the GOAWAY: HTTP/%d %q", got.proto, got.body)
	}
}

// TestHTTP2MaxRequestsPerConnection: max_requests_per_connection counts
// streams; the stream that reaches it ends the connection (GOAWAY), and
// the client opens another for the next requests.
func TestHTTP2MaxRequestsPerConnection(t *testing.T) {
	_, listen, _ := startH2C(t, "max_requests_per_connection: 2")

	h := dialRawH2(t, listen)
	h.get(1, "/")
	h.get(3, "/")
	var ev rawEvents
	h.read(&ev, func(ev *rawEvents) bool { return ev.closedErr != nil })
	if ev.goaway == nil || ev.goaway.ErrCode != http2.ErrCodeNo {
		t.Fatalf("no GOAWAY (NO_ERROR) after 2 streams: %+v", ev.goaway)
	}
	if ev.body[1] != "b" || ev.body[3] != "b" {
		t.Errorf("streams 1 and 3: %q %q, want both answered", ev.body[1], ev.body[3])
	}

	var dials atomic.Int32
	client := h2Client(true)
	client.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	for i := range 4 {
		if got := h2Get(t, client, "http://"+listen+"/"); got.body != "b" {
			t.Fatalf("request %d: %q", i, got.body)
		}
	}
	if n := dials.Load(); n < 2 {
		t.Errorf("4 requests with max_requests_per_connection 2 took %d connection(s)", n)
	}
}

// TestHTTP2NodeDrain: draining the node (its shutdown) sends GOAWAY on an
// HTTP/2 connection; the stream in flight completes and Drain returns
// once the connection is gone.
func TestHTTP2NodeDrain(t *testing.T) {
	b, listen, dp := startH2C(t, "idle_timeout: 60s")

	h := dialRawH2(t, listen)
	h.get(1, "/slow")
	waitFor(t, "the request to reach the backend", func() bool { return b.held.Load() == 1 })
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		drained <- dp.Drain(ctx)
	}()
	var ev rawEvents
	h.read(&ev, func(ev *rawEvents) bool { return ev.goaway != nil })
	if ev.goaway == nil || ev.goaway.ErrCode != http2.ErrCodeNo {
		t.Fatalf("no GOAWAY (NO_ERROR) on drain: %+v, %v", ev.goaway, ev.closedErr)
	}
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) with a stream in flight", err)
	default:
	}
	close(b.release)
	h.read(&ev, func(ev *rawEvents) bool { return ev.closedErr != nil })
	if !ev.ended[1] || ev.body[1] != "b" {
		t.Errorf("the stream in flight at drain: ended %v, body %q", ev.ended[1], ev.body[1])
	}
	select {
	case err := <-drained:
		if err != nil {
			t.Errorf("Drain: %v", err)
		}
	case <-time.After(testTimeout):
		t.Errorf("Drain did not return after the connection ended")
	}
}
