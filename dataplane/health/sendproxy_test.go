package health

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

// TestChecksSendProxyHeader: with SendProxy, TCP and HTTP checks start
// their connection with a header that says the node speaks for itself (v1
// "PROXY UNKNOWN", v2 LOCAL), byte for byte, and the HTTP request follows
// it; without, the first bytes are the request's.
func TestChecksSendProxyHeader(t *testing.T) {
	const v2Local = "\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
	const request = "GET /health HTTP/1.1\r\n"
	for _, tt := range []struct {
		name    string
		version int
		http    bool
		want    string // the first bytes the endpoint reads
	}{
		{"tcp v1", 1, false, "PROXY UNKNOWN\r\n"},
		{"tcp v2", 2, false, v2Local},
		{"http v1", 1, true, "PROXY UNKNOWN\r\n" + request},
		{"http v2", 2, true, v2Local + request},
		{"http none", 0, true, request},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan string, 1)
			srv := serve(t, func(c net.Conn, _ int) {
				c.SetReadDeadline(time.Now().Add(testTimeout))
				buf := make([]byte, len(tt.want))
				n, _ := io.ReadFull(bufio.NewReader(c), buf)
				got <- string(buf[:n])
				io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n")
			})
			s := Spec{Addr: srv.addr, Timeout: testTimeout, SendProxy: tt.version}
			if tt.http {
				s.HTTPPath = "/health"
			}
			if up, _ := checkOnce(t, s); !up {
				t.Errorf("check failed")
			}
			if g := <-got; g != tt.want {
				t.Errorf("endpoint read %q, want %q", g, tt.want)
			}
		})
	}
}
