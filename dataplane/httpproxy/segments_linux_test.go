package httpproxy

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/internal/splice/splicetest"
	"github.com/sluice-lb/sluice/dataplane/internal/tcpseg"
	"github.com/sluice-lb/sluice/dataplane/internal/tcpseg/tcpsegtest"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
)

// TestBodyReadsFillWholeSegments: a large response body is read from the
// endpoint in as many whole segments of the client's socket as fit in the
// big buffer, by the size the socket reports once the body is over. With a
// client that announces segments of 20000 bytes, three of 19988 (the rest
// is TCP's timestamps). Over loopback one of 65483 bytes (65464 over IPv6),
// where a read of the whole 68 KiB went out as that and a short one, which
// cost the node twice the CPU per MiB; early in a connection the socket
// reports less (half the client's largest window), so the size is asked
// again as the body goes on.
func TestBodyReadsFillWholeSegments(t *testing.T) {
	splicetest.Set(t, "copied") // as the node copies bodies between loopback peers
	const size = 16 << 20
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n")
	resp = append(resp, make([]byte, size)...)
	ep := upstream.New("web", "big", loopback.Serve(t, func(c net.Conn) {
		defer c.Close()
		loopback.AnswerHeads(c, resp, make([]byte, 4<<10))
	}))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{ep}}})

	// bursts GETs the body on c until the connection's segment size is
	// the one its socket reports, at most n times, and returns both.
	bursts := func(c net.Conn, n int) (mss uint16, dst int) {
		br := bufio.NewReaderSize(c, 1<<20)
		for i := 0; i < n && (i == 0 || int(mss) != dst); i++ {
			c.SetDeadline(time.Now().Add(defaultTestTimeout))
			io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
			r := readResponse(t, br, "GET")
			if r.code != 200 || len(r.body) != size {
				t.Fatalf("GET /big: %s with %d bytes, want 200 with %d", r.status, len(r.body), size)
			}
			waitForParked(t, 1)
			p.srv.mu.Lock()
			cc := p.srv.conns
			p.srv.mu.Unlock()
			idlePark.mu.Lock()
			mss = cc.mss
			idlePark.mu.Unlock()
			cc.raw.Control(func(fd uintptr) { dst = tcpseg.MSS(int(fd)) })
		}
		return mss, dst
	}

	t.Run("announced", func(t *testing.T) {
		d := net.Dialer{Control: tcpsegtest.Announce(20000)}
		c, err := d.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		mss, dst := bursts(c, 1)
		if dst > 20000 || dst < 19900 {
			t.Fatalf("the client's socket sends segments of %d bytes; the test meant at most 20000, less TCP's options", dst)
		}
		if int(mss) != dst {
			t.Errorf("the body is read by segments of %d bytes; the client's socket sends %d", mss, dst)
		}
		if got, want := tcpseg.Fit(bigBufSize, int(mss)), 3*dst; got != want {
			t.Errorf("a read takes %d bytes, want %d (three whole segments)", got, want)
		}
	})
	t.Run("loopback", func(t *testing.T) {
		c := p.dial()
		defer c.Close()
		const most = 10
		mss, dst := bursts(c, most)
		if dst <= 32<<10 {
			t.Fatalf("the client's socket sends segments of %d bytes; over loopback, with the window grown, they take 64 KiB less TCP's headers", dst)
		}
		if int(mss) != dst {
			t.Errorf("after %d bodies, they are read by segments of %d bytes; the client's socket sends %d", most, mss, dst)
		}
		if got := tcpseg.Fit(bigBufSize, int(mss)); got != dst {
			t.Errorf("a read takes %d bytes, want %d (one segment)", got, dst)
		}
	})
}
