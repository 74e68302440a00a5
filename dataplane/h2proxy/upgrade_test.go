package h2proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// pickDirector picks ep for every request.
type pickDirector struct{ ep *upstream.Endpoint }

func (d pickDirector) Pick(*httpproxy.Request) (*upstream.Endpoint, time.Duration, error) {
	d.ep.Acquire()
	return d.ep, time.Second, nil
}

// echoUpgradeEndpoint switches a request with "Upgrade: echo" to a
// protocol that says "hello\n" and echoes until the client half-closes,
// then closes. It answers any other request 426.
func echoUpgradeEndpoint(t *testing.T) string {
	t.Helper()
	return loopback.Accept(t, func(c net.Conn) { go echoUpgrade(c) })
}

func echoUpgrade(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if req.Header.Get("Upgrade") != "echo" || req.Header.Get("Connection") != "upgrade" {
			io.WriteString(c, "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n")
			continue
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhello\n")
		io.Copy(c, br)
		return
	}
}

// TestUpgradeTunnel: an HTTP/1.1 client's Upgrade request gets the
// endpoint's 101, and then a tunnel: what each side sent right behind its
// head goes through first, bytes flow both ways, a half-close goes
// through, and the connection's record counts one request, the tunnel's
// bytes and endpoint, and why it ended; the endpoint is released and its
// connection closed. The meters count the tunnel's bytes while it is
// open, and each once.
func TestUpgradeTunnel(t *testing.T) {
	ep := upstream.New("c", "e", echoUpgradeEndpoint(t))
	lm := meter.NewListener("l", nil)
	addr, done, up := serveMetered(t, ep, lm)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	// A request the endpoint declines first: the connection goes on.
	io.WriteString(c, "GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 426 {
		t.Fatalf("a request without Upgrade: %v, %v; want the endpoint's 426", resp, err)
	}
	io.WriteString(c, "GET /t HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly ")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "echo" || resp.Header.Get("Connection") != "upgrade" {
		t.Fatalf("the upgrade: %v, %v; want 101 with Upgrade: echo, Connection: upgrade", resp, err)
	}
	io.WriteString(c, "ping")
	want := "hello\nearly ping"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != want {
		t.Fatalf("through the tunnel: %q, %v; want %q", got, err, want)
	}
	// The bodies' bytes: "hello\n" behind the endpoint's head, then what
	// the relay carried, "early ping" up (the client's bytes behind its
	// head wait in the screen until the 101, then go as the tunnel's) and
	// "early ping" down (the 426 had none).
	counted := func(epOut, epIn, lIn, lOut uint64) {
		t.Helper()
		deadline := time.Now().Add(meter.SettleEvery + 5*time.Second)
		for {
			st, lc := ep.Stats(), lm.Counts()
			if st.BytesOut == epOut && st.BytesIn == epIn && lc.BytesIn == lIn && lc.BytesOut == lOut {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("counted: endpoint %d out, %d in; listener %d in, %d out; want %d, %d; %d, %d",
					st.BytesOut, st.BytesIn, lc.BytesIn, lc.BytesOut, epOut, epIn, lIn, lOut)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	counted(10, 16, 10, 10) // while the tunnel is open
	c.(*net.TCPConn).CloseWrite()
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after the client's half-close: %q, %v; want the endpoint's close", rest, err)
	}

	select {
	case e := <-done:
		if e.why != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED {
			t.Errorf("close reason %v, want client_closed", e.why)
		}
		if e.info.Requests != 2 || e.info.Endpoint != "e" {
			t.Errorf("record: %d requests, endpoint %q; want 2, e", e.info.Requests, e.info.Endpoint)
		}
		if e.info.BytesIn < uint64(len("early ping")) || e.info.BytesOut < uint64(len(want)) {
			t.Errorf("record: %d bytes in, %d out: fewer than the tunnel carried", e.info.BytesIn, e.info.BytesOut)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeConn did not return after the tunnel ended")
	}
	counted(10, 16, 10, 16)
	if n := ep.Inflight(); n != 0 {
		t.Errorf("endpoint in flight: %d, want 0", n)
	}
	up.Close() // the plain request's pooled connection
	if n := ep.Conns(); n != 0 {
		t.Errorf("endpoint connections: %d, want 0", n)
	}
}

// TestUpgradeInterimBound: an upgrade's answer may follow up to 16
// interim responses, as on the HTTP/1.1 engine; a 17th is refused.
func TestUpgradeInterimBound(t *testing.T) {
	for _, tt := range []struct {
		interims int
		ok       bool
	}{{16, true}, {17, false}} {
		ours, theirs := net.Pipe()
		go func() {
			defer theirs.Close()
			http.ReadRequest(bufio.NewReader(theirs))
			for range tt.interims {
				io.WriteString(theirs, "HTTP/1.1 102 Processing\r\n\r\n")
			}
			io.WriteString(theirs, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		}()
		u := &upgrading{c: ours, br: bufio.NewReader(ours)}
		req, _ := http.NewRequest("GET", "http://x/t", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "echo")
		resp, err := u.exchange(req)
		if got := err == nil && resp.StatusCode == 101; got != tt.ok {
			t.Errorf("%d interim responses: %v, %v; want the 101: %v", tt.interims, resp, err, tt.ok)
		}
		ours.Close()
	}
}
