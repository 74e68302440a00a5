package h2proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
)

// invalidEndpoint answers by path, over HTTP/1.1 of its own: /switch with
// a 101 nobody asked for, holding the connection open; /status with the
// status 999; /bighead with a head of 100 KiB; anything else with 200 ok.
func invalidEndpoint(t *testing.T) string {
	t.Helper()
	return loopback.Serve(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			switch req.URL.Path {
			case "/switch":
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
				c.SetReadDeadline(time.Now().Add(time.Minute))
				io.Copy(io.Discard, c) // held until the proxy lets go
				return
			case "/status":
				io.WriteString(c, "HTTP/1.1 999 Weird\r\nContent-Length: 0\r\n\r\n")
			case "/bighead":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", 100<<10)+"\r\nContent-Length: 0\r\n\r\n")
			default:
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		}
	})
}

// TestInvalidResponsesRefused: an endpoint's response the HTTP/1.1 engine
// refuses, the HTTP/2 engine refuses too, with the same 502 and words: a
// 101 to a request that asked for no upgrade (it left the client waiting
// with no timeout, then sent it a bare 101), a status past 599, a head
// past 64 KiB. The client's connection goes on.
func TestInvalidResponsesRefused(t *testing.T) {
	ep := upstream.New("c", "e", invalidEndpoint(t))
	addr, _, _ := serveRecorded(t, ep)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for _, tt := range []struct{ path, want string }{
		{"/switch", "unexpected 101 Switching Protocols"},
		{"/status", "malformed status line"},
		{"/bighead", "response head larger than 64 KiB"},
		{"/ok", ""},
	} {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET "+tt.path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", tt.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if tt.want == "" {
			if resp.StatusCode != 200 || string(body) != "ok" {
				t.Errorf("%s after the refusals: %d %q, want 200 ok on the same connection", tt.path, resp.StatusCode, body)
			}
			continue
		}
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), tt.want) {
			t.Errorf("%s: %d %q, want 502 saying %q", tt.path, resp.StatusCode, body, tt.want)
		}
	}
}
