package h2proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// floodTimeout is the response timeout of the proxies that
// untypedEndpoint's /flood is meant for.
const floodTimeout = time.Second

// untypedEndpoint answers with a body that looks like HTML, with neither
// Content-Type nor Date; on /hints it sends 103 Early Hints first, on
// /many 20 103s and then the answer. On /flood it sends 103s until its
// client goes away: one at once, a burst of ten 5ms apart around
// floodTimeout (when a proxy's response timeout fires on an idle machine,
// so that some are on their way then), then one every floodTimeout/2. A
// proxy whose timeout fires up to 3s late has been sent no more than
// httpproxy.MaxInterim; one whose timeout never fires, more.
func untypedEndpoint(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hints":
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			clear(w.Header())
		case "/flood":
			w.Header().Set("Link", "</a.css>; rel=preload")
			for i := 0; ; i++ {
				w.WriteHeader(http.StatusEarlyHints)
				wait := floodTimeout / 2
				switch {
				case i == 0:
					wait = floodTimeout - 25*time.Millisecond
				case i < 10:
					wait = 5 * time.Millisecond
				}
				select {
				case <-r.Context().Done():
					return
				case <-time.After(wait):
				}
			}
		case "/many":
			w.Header().Set("Link", "</a.css>; rel=preload")
			for range 20 {
				w.WriteHeader(http.StatusEarlyHints)
			}
			clear(w.Header())
		}
		w.Header()["Content-Type"], w.Header()["Date"] = nil, nil
		io.WriteString(w, "<html><script>alert(1)</script></html>")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestResponsesRelayedAsSent: the engine adds no Content-Type and no Date
// to an endpoint's response that has none (net/http's server would guess
// text/html here), and relays a 103 Early Hints ahead of the response,
// over HTTP/2 and to an HTTP/1.1 client alike, as the HTTP/1.1 engine does.
func TestResponsesRelayedAsSent(t *testing.T) {
	ep := upstream.New("c", "e", untypedEndpoint(t))
	hs := httpproxy.NewServer(&httpproxy.Config{Director: pickDirector{ep}}, nil)
	up := NewUpstream(nil)
	t.Cleanup(up.Close)

	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, http.StatusText(code)+" "+h.Get("Link"))
		return nil
	}}
	h2 := &http.Transport{Protocols: new(http.Protocols)}
	h2.Protocols.SetUnencryptedHTTP2(true)
	h2.DialTLSContext = func(context.Context, string, string) (net.Conn, error) { return nil, tls.AlertError(0) }
	addr := serveOne(t, NewServer(hs, up, nil))
	t.Cleanup(h2.CloseIdleConnections) // before serveOne waits for the connection to end
	for _, path := range []string{"/plain", "/hints"} {
		hints = nil
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", "http://"+addr+path, nil)
		resp, err := (&http.Client{Transport: h2, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("HTTP/2 %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if ct, date := resp.Header.Values("Content-Type"), resp.Header.Values("Date"); resp.ProtoMajor != 2 || len(ct) > 0 || len(date) > 0 {
			t.Errorf("HTTP/2 %s: %s with Content-Type %q and Date %q, want HTTP/2 with neither", path, resp.Proto, ct, date)
		}
		if !strings.HasPrefix(string(body), "<html>") {
			t.Errorf("HTTP/2 %s: body %q", path, body)
		}
		want := []string(nil)
		if path == "/hints" {
			want = []string{"Early Hints </a.css>; rel=preload"}
		}
		if strings.Join(hints, "|") != strings.Join(want, "|") || resp.Header.Get("Link") != "" {
			t.Errorf("HTTP/2 %s: 1xx %q and Link %q on the response, want 1xx %q and no Link", path, hints, resp.Header.Get("Link"), want)
		}
	}

	// An HTTP/1.1 client of the same engine.
	addr1, _, _ := serveRecorded(t, ep)
	c, err := net.Dial("tcp", addr1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /hints HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	head, err := textproto.NewReader(br).ReadLine()
	if err != nil || head != "HTTP/1.1 103 Early Hints" {
		t.Fatalf("HTTP/1.1: first line %q, %v; want the 103", head, err)
	}
	rest, _ := textproto.NewReader(br).ReadMIMEHeader()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rest.Get("Link") == "" || resp.StatusCode != 200 || len(resp.Header.Values("Content-Type")) > 0 || len(resp.Header.Values("Date")) > 0 || resp.Header.Get("Link") != "" {
		t.Errorf("HTTP/1.1: 103 with %v, then %d with %v; want a Link on the 103 only, no Content-Type or Date", rest, resp.StatusCode, resp.Header)
	}
}

// TestInterimResponsesBounded: 1xx responses stop at the final answer,
// whoever gives it: an endpoint that goes on sending 103s past
// response_timeout leaves the client a 504 that carries none of their
// fields (and, under -race, writes nothing once the handler answers);
// more than httpproxy.MaxInterim of them are an invalid response (502),
// as on the HTTP/1.1 engine; an HTTP/1.0 client gets none (RFC 9110
// §15.2). Only the flood meets a short response_timeout; the others have
// the default, which no stall reaches.
func TestInterimResponsesBounded(t *testing.T) {
	ep := upstream.New("c", "e", untypedEndpoint(t))
	up := NewUpstream(nil)
	t.Cleanup(up.Close)
	s := NewServer(httpproxy.NewServer(&httpproxy.Config{Director: pickDirector{ep}}, nil), up, nil)
	flood := NewServer(httpproxy.NewServer(&httpproxy.Config{Director: pickDirector{ep}, ResponseTimeout: floodTimeout}, nil), up, nil)
	for _, tc := range []struct {
		s           *Server
		path, proto string
		want        int
	}{
		{flood, "/flood", "HTTP/1.1", 504},
		{s, "/many", "HTTP/1.1", 502},
		{s, "/hints", "HTTP/1.0", 200},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan struct{})
		go func() {
			defer close(served)
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			tc.s.ServeConn(c, netip.MustParseAddrPort(c.RemoteAddr().String()), netip.MustParseAddrPort(c.LocalAddr().String()), nil, false, nil, &httpproxy.ConnInfo{Start: time.Now()})
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET %s %s\r\nHost: x\r\nConnection: close\r\n\r\n", tc.path, tc.proto)
		raw, _ := io.ReadAll(c)
		c.Close()
		ln.Close()
		<-served
		// The 103s that came before the final answer, then the answer.
		final := string(raw)
		for strings.HasPrefix(final, "HTTP/1.1 103") {
			_, final, _ = strings.Cut(final, "\r\n\r\n")
		}
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(final)), nil)
		if err != nil {
			t.Fatalf("%s %s: %v in %q", tc.proto, tc.path, err, raw)
		}
		if resp.StatusCode != tc.want || resp.Header.Get("Link") != "" {
			t.Errorf("%s %s: %d with Link %q, want %d without", tc.proto, tc.path, resp.StatusCode, resp.Header.Get("Link"), tc.want)
		}
		if n := strings.Count(string(raw), " 103 "); tc.proto == "HTTP/1.0" && n != 0 || tc.path == "/many" && n > httpproxy.MaxInterim {
			t.Errorf("%s %s: %d 103s relayed", tc.proto, tc.path, n)
		}
	}

	// The flood over HTTP/2, where the 103s and the 504 share the
	// stream's header writes.
	h2 := &http.Transport{Protocols: new(http.Protocols)}
	h2.Protocols.SetUnencryptedHTTP2(true)
	addr := serveOne(t, flood)
	t.Cleanup(h2.CloseIdleConnections) // before serveOne waits for the connection to end
	for i := range 5 {
		resp, err := (&http.Client{Transport: h2, Timeout: 10 * time.Second}).Get("http://" + addr + "/flood")
		if err != nil {
			t.Fatalf("HTTP/2 /flood %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 504 || resp.Header.Get("Link") != "" {
			t.Errorf("HTTP/2 /flood %d: %d with Link %q, want 504 without", i, resp.StatusCode, resp.Header.Get("Link"))
		}
	}
}
