package h2proxy

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// backendOf serves h on a new loopback listener until the test ends
// (HTTP/1.1, and HTTP/2 in clear too with h2c), and returns an endpoint at
// its address. h sees every request, OPTIONS * too.
func backendOf(t *testing.T, h http.HandlerFunc, h2c bool) *upstream.Endpoint {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend := &http.Server{Handler: h, DisableGeneralOptionsHandler: true}
	if h2c {
		backend.Protocols = new(http.Protocols)
		backend.Protocols.SetHTTP1(true)
		backend.Protocols.SetUnencryptedHTTP2(true)
	}
	go backend.Serve(ln)
	t.Cleanup(func() { backend.Close() })
	return upstream.New("web", "a", ln.Addr().String())
}

// engine is an HTTP/2 engine for a listener with cfg, speaking HTTP/2 to
// its endpoints when h2, else HTTP/1.1; its endpoint connections close
// when the test ends.
func engine(t *testing.T, cfg *httpproxy.Config, h2 bool) *Server {
	up := NewUpstream(func(*upstream.Endpoint) Protocol { return Protocol{HTTP2: h2} })
	t.Cleanup(up.Close)
	return NewServer(httpproxy.NewServer(cfg, nil), up, nil)
}

// serving has s serve the HTTP/1.x client connection it is given, as it
// serves those of a translating listener (the client at 127.0.0.1:50000),
// closes it, and sends the close reason ServeConn returned to ended, if
// not nil.
func serving(s *Server, ended chan<- sluicev1.CloseReason) func(net.Conn) {
	return func(c net.Conn) {
		defer c.Close()
		why := s.ServeConn(c, netip.MustParseAddrPort("127.0.0.1:50000"), netip.MustParseAddrPort("127.0.0.1:80"),
			nil, false, nil, &httpproxy.ConnInfo{Start: time.Now()})
		if ended != nil {
			ended <- why
		}
	}
}

// serveHTTP1 has s serve one HTTP/1.x client connection (serving) over
// a pipe, and returns the client's end (closed when the test ends, and
// deadlined 10 s from now) and the close reason ServeConn returns once
// the connection ends.
func serveHTTP1(t *testing.T, s *Server) (net.Conn, <-chan sluicev1.CloseReason) {
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close() })
	ended := make(chan sluicev1.CloseReason, 1)
	go serving(s, ended)(server)
	client.SetDeadline(time.Now().Add(10 * time.Second))
	return client, ended
}

// postH2C posts body to url over h2c (HTTP/2 with prior knowledge) and
// returns the response, whose body is closed when the test ends; a
// request that gets none within 10 s fails the test.
func postH2C(t *testing.T, url string, body io.Reader) *http.Response {
	t.Helper()
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &h2c}
	t.Cleanup(tr.CloseIdleConnections)
	req, err := http.NewRequest("POST", url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}
