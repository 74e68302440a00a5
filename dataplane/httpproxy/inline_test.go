package httpproxy

import (
	"bufio"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

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
	d := &inlineDirector{rrDirector: rrDirector{eps: []*upstream.Endpoint{b.ep}}}
	p := startProxy(t, &Config{Director: d})
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
	// Which were served from inside the wait: the complete ones that came
	// after a first request. The pieces of /two and /three, /seven's last
	// chunk and /eight's body arrive while served; if the machine was too
	// slow to read them apart, those were served inline, whole.
	want := map[string]bool{"/one": false, "/four": true, "/five": true, "/six": true, "/upgrade": false}
	d.mu.Lock()
	defer d.mu.Unlock()
	for path, inline := range want {
		if d.inline[path] != inline {
			t.Errorf("%s served inline: %v, want %v", path, d.inline[path], inline)
		}
	}
}

// inlineDirector is an rrDirector that records, by path, whether it picked
// for a request served inline (serveInline is on the stack).
type inlineDirector struct {
	rrDirector
	mu     sync.Mutex
	inline map[string]bool
}

func (d *inlineDirector) Pick(r *Request) (*upstream.Endpoint, time.Duration, error) {
	pc := make([]uintptr, 64)
	frames := runtime.CallersFrames(pc[:runtime.Callers(1, pc)])
	inline := false
	for {
		f, more := frames.Next()
		inline = inline || strings.HasSuffix(f.Function, ".(*clientConn).serveInline")
		if !more {
			break
		}
	}
	d.mu.Lock()
	if d.inline == nil {
		d.inline = make(map[string]bool)
	}
	d.inline[string(r.Path())] = inline
	d.mu.Unlock()
	return d.rrDirector.Pick(r)
}

// A request served from inside the idle wait holds its connection's
// socket, so that closing it from outside waits for the request to end.
// When the node removes a listener, it closes the server first: a request
// waiting for its endpoint then ends at its next check, and the client
// connection with it, recorded as closed by the listener; the endpoint
// gets its request count back.
func TestServerCloseEndsInlineRequest(t *testing.T) {
	h := startHoldingBackend(t)
	t.Cleanup(func() { close(h.release) }) // before the backend's Close
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{h.ep}}})
	c := p.dial()
	br := bufio.NewReader(c)
	getBody(t, c, br, "/", "/ 0")
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	h.waitRequest(t)
	p.srv.Close()
	expectEOF(t, br)
	if ci := p.info(); ci.Requests != 2 || ci.Reason != sluicev1.CloseReason_CLOSE_REASON_LISTENER_CLOSED {
		t.Errorf("ConnInfo requests=%d reason=%v, want 2 LISTENER_CLOSED", ci.Requests, ci.Reason)
	}
	waitFor(t, func() bool { return h.ep.Inflight() == 0 })
}

// clientConn stays in the 576-byte size class on 64-bit platforms: every
// open connection has one, and the idle memory row of make bench counts
// it (BENCHMARKS.md).
func TestClientConnSizeClass(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes differ on 32-bit platforms")
	}
	if n := unsafe.Sizeof(clientConn{}); n > 576 {
		t.Errorf("clientConn is %d bytes, past the 576-byte size class", n)
	}
}
