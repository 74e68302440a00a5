package h2proxy

import (
	"bufio"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
)

// gatedDirector picks ep (nil: no endpoint) for every request, once the
// test lets it: picking tells the test, which then closes release.
type gatedDirector struct {
	picking chan struct{}
	release chan struct{}
	ep      *upstream.Endpoint
}

func (d *gatedDirector) Pick(*httpproxy.Request) (*upstream.Endpoint, time.Duration, error) {
	d.picking <- struct{}{}
	<-d.release
	if d.ep == nil {
		return nil, 0, httpproxy.ErrNoEndpoint
	}
	d.ep.Acquire()
	return d.ep, time.Second, nil
}

// holdingEndpoint is an endpoint that reads a request head and holds it
// unanswered; its connection is sent on held.
func holdingEndpoint(t *testing.T) (string, <-chan net.Conn) {
	held := make(chan net.Conn, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		t.Cleanup(func() { c.Close() })
		if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
			held <- c
		}
	}()
	return ln.Addr().String(), held
}

// TestClosedServerCutsStreams: once the server is closed (the node removed
// its listener, or stops and shuts its endpoints' connections), a stream
// that fails to reach its endpoint is reset, not answered 502 or 503, as
// the HTTP/1.1 engine then closes its connections without an answer; nor
// is its connect retried. The client's socket stays open here, which in
// the node is closed right after: an answer would otherwise reach a
// client whose socket closes late.
func TestClosedServerCutsStreams(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setUp returns the endpoint the Director picks (nil: none) and
		// what happens once the request waits in Pick: close closes the
		// server, release lets Pick return.
		setUp func(t *testing.T) (*upstream.Endpoint, func(close, release func()))
	}{
		{"its endpoint connection fails", func(t *testing.T) (*upstream.Endpoint, func(close, release func())) {
			addr, held := holdingEndpoint(t)
			return upstream.New("c", "e", addr), func(close, release func()) {
				release()
				select {
				case c := <-held:
					close()
					c.Close() // as the endpoint's Shutdown does
				case <-time.After(5 * time.Second):
					t.Fatal("the request did not reach the endpoint")
				}
			}
		}},
		{"its connect fails", func(t *testing.T) (*upstream.Endpoint, func(close, release func())) {
			return upstream.New("c", "e", loopback.FreeAddr(t)), func(close, release func()) {
				close()
				release()
			}
		}},
		{"no endpoint is left", func(t *testing.T) (*upstream.Endpoint, func(close, release func())) {
			return nil, func(close, release func()) {
				close()
				release()
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep, run := tc.setUp(t)
			d := &gatedDirector{picking: make(chan struct{}, 8), release: make(chan struct{}), ep: ep}
			hs := httpproxy.NewServer(&httpproxy.Config{Director: d, Retries: 2}, nil)
			up := NewUpstream(func(*upstream.Endpoint) Protocol { return Protocol{} })
			t.Cleanup(up.Close)
			cl := dialH2(t, serveOne(t, NewServer(hs, up, nil)))
			cl.get(1)
			select {
			case <-d.picking:
			case <-time.After(5 * time.Second):
				t.Fatal("the request was not picked for")
			}
			run(hs.Close, func() { close(d.release) })
			if got, want := cl.wait(1), (answer{rst: http2.ErrCodeInternal}); got != want {
				t.Errorf("got %v, want %v", got, want)
			}
			if n := len(d.picking); n != 0 {
				t.Errorf("picked %d more times once the server was closed, want none", n)
			}
			if ep != nil && ep.Inflight() != 0 {
				t.Errorf("endpoint in flight: %d, want 0", ep.Inflight())
			}
		})
	}
}

// serveOne serves the first connection to a new loopback listener with s,
// as HTTP/2, and returns the listener's address.
func serveOne(t *testing.T, s *Server) string {
	t.Helper()
	return serveOneVia(t, s, nil)
}

// serveOneVia is serveOne, s serving what wrap makes of the connection
// (nil: the connection itself).
func serveOneVia(t *testing.T, s *Server, wrap func(net.Conn) net.Conn) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	served := make(chan struct{})
	t.Cleanup(func() { <-served })
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		served := c
		if wrap != nil {
			served = wrap(c)
		}
		s.ServeConn(served, netip.MustParseAddrPort(c.RemoteAddr().String()), netip.MustParseAddrPort(c.LocalAddr().String()), nil, true, nil, &httpproxy.ConnInfo{Start: time.Now()})
	}()
	return ln.Addr().String()
}
