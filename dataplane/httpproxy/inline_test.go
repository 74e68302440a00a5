package httpproxy

import (
	"bufio"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// One keep-alive connection carries every kind of request in turn, each
// arriving while the connection waits for its next one: those served from
// inside the wait (complete, with no body or all of it at hand) and those
// that need more from the client (a head or a body still coming, a
// chunked body, Expect: 100-continue, an Upgrade), pipelined or not. The
// endpoint sees each request whole and in order, and the client gets each
// answer, then the tunnel.
func TestKeepAliveRequestsOfEveryKind(t *testing.T) {
	b := startBackend(t, "b1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/upgrade" {
			c, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			defer c.Close()
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
			io.Copy(c, rw)
			return
		}
		body, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(body))
	}))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	c := p.dial()
	br := bufio.NewReader(c)
	// send writes the parts of a request apart, so that the proxy reads
	// the first before the next comes (a pause well below parkAfter).
	send := func(parts ...string) {
		for i, part := range parts {
			if i > 0 {
				time.Sleep(5 * time.Millisecond)
			}
			io.WriteString(c, part)
		}
	}
	expect := func(method, want string) {
		t.Helper()
		r := readResponse(t, br, method)
		if r.code != 200 || r.body != want || closes(r) {
			t.Fatalf("got %s %q close=%v, want 200 %q, kept open", r.status, r.body, closes(r), want)
		}
	}
	const h = " HTTP/1.1\r\nHost: x\r\n"

	send("GET /one" + h + "\r\n")
	expect("GET", "GET /one ")
	// A body that comes in two pieces.
	send("POST /two"+h+"Content-Length: 10\r\n\r\n01234", "56789")
	expect("POST", "POST /two 0123456789")
	// A head that comes in two pieces.
	send("GET /thr", "ee"+h+"\r\n")
	expect("GET", "GET /three ")
	// Three pipelined, one with a body, in one write.
	send("GET /four" + h + "\r\n" + "POST /five" + h + "Content-Length: 3\r\n\r\nabc" + "HEAD /six" + h + "\r\n")
	expect("GET", "GET /four ")
	expect("POST", "POST /five abc")
	expect("HEAD", "")
	// A chunked body whose last chunk comes later.
	send("POST /seven"+h+"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", "0\r\n\r\n")
	expect("POST", "POST /seven abc")
	// Expect: 100-continue: the body goes once the endpoint asks for it.
	send("POST /eight" + h + "Expect: 100-continue\r\nContent-Length: 3\r\n\r\n")
	if line, err := br.ReadString('\n'); err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("got %q, %v; want the endpoint's 100 Continue", line, err)
	}
	if line, _ := br.ReadString('\n'); line != "\r\n" {
		t.Fatalf("100 Continue goes on with %q", line)
	}
	send("xyz")
	expect("POST", "POST /eight xyz")
	// Last, an Upgrade: the connection becomes a tunnel.
	send("GET /upgrade" + h + "Connection: upgrade\r\nUpgrade: echo\r\n\r\n")
	if r, err := http.ReadResponse(br, nil); err != nil || r.StatusCode != 101 {
		t.Fatalf("upgrade: %v, %v; want 101", r, err)
	}
	send("ping")
	got := make([]byte, 4)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "ping" {
		t.Fatalf("through the tunnel: %q, %v; want the echo of ping", got, err)
	}
	c.Close()
	if ci := p.info(); ci.Requests != 9 || ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED {
		t.Errorf("ConnInfo requests=%d reason=%v, want 9 CLIENT_CLOSED", ci.Requests, ci.Reason)
	}
}
