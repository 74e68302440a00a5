package h2proxy

import (
	"bufio"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// oneEndpoint is a Director that sends every request to ep.
type oneEndpoint struct{ ep *upstream.Endpoint }

func (d oneEndpoint) Pick(*httpproxy.Request) (*upstream.Endpoint, time.Duration, error) {
	d.ep.Acquire()
	return d.ep, time.Second, nil
}

// TestClosedServerCutsStreams: a stream whose endpoint connection fails
// once the server is closed (the node removed its listener, or stops and
// shuts its endpoints' connections) is cut, not answered with a 502, as
// the HTTP/1.1 engine then closes its connections without an answer. The
// client's socket stays open here, which in the node is closed right
// after: the 502 would otherwise reach a client whose socket closes late.
func TestClosedServerCutsStreams(t *testing.T) {
	held := make(chan net.Conn, 1)
	eln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eln.Close() })
	go func() {
		c, err := eln.Accept()
		if err != nil {
			return
		}
		// Read the request head, then hold it unanswered.
		if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
			held <- c
		} else {
			c.Close()
		}
	}()

	ep := upstream.New("c", "e", eln.Addr().String())
	hs := httpproxy.NewServer(&httpproxy.Config{Director: oneEndpoint{ep}}, nil)
	up := NewUpstream(func(*upstream.Endpoint) Protocol { return Protocol{} })
	t.Cleanup(up.Close)
	s := NewServer(hs, up, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		s.ServeConn(c, netip.MustParseAddrPort(c.RemoteAddr().String()), nil, true, nil, &httpproxy.ConnInfo{Start: time.Now()})
	}()

	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	t.Cleanup(tr.CloseIdleConnections)
	cl := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	type answer struct {
		resp *http.Response
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := cl.Get("http://" + ln.Addr().String() + "/")
		got <- answer{resp, err}
	}()
	var ec net.Conn
	select {
	case ec = <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not reach the endpoint")
	}
	hs.Close()
	ec.Close() // the endpoint's connection fails, as Shutdown makes it
	a := <-got
	if a.err == nil {
		a.resp.Body.Close()
		t.Fatalf("got %s; want the stream cut without an answer", a.resp.Status)
	}
	if n := ep.Inflight(); n != 0 {
		t.Errorf("endpoint in flight: %d, want 0", n)
	}
	tr.CloseIdleConnections()
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Error("ServeConn did not return after the client went")
	}
}
