package httpproxy

import (
	"bufio"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/internal/splice"
	"github.com/sluice-lb/sluice/dataplane/internal/splice/splicetest"
	"github.com/sluice-lb/sluice/dataplane/internal/tcpseg"
	"github.com/sluice-lb/sluice/dataplane/internal/tcpseg/tcpsegtest"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
)

// TestBodyReadsFillWholeSegments: a large body, either way, is read in as
// many whole segments of the socket it goes to as fit in the big buffer.
// With sockets that announce segments of 20000 bytes, three of 19988 (the
// rest is TCP's timestamps). Over loopback one of 65483 bytes (65464 over
// IPv6), where a read of the whole 68 KiB went out as that and a short
// one, which under BBR cost the node twice the CPU per MiB; early in a
// connection the socket reports less (half its peer's largest window), so
// the size is asked again as the body goes on. TestSplicedBodiesFollowPacing
// has the spliced bodies.
func TestBodyReadsFillWholeSegments(t *testing.T) {
	splicetest.Set(t, "copied") // as the node copies bodies between loopback peers
	const size = 16 << 20
	cfg := &Config{Director: &rrDirector{eps: []*upstream.Endpoint{bigBodies(t, size)}}}

	t.Run("download, announced", func(t *testing.T) {
		reads := fullReads(t)
		p := startProxy(t, cfg)
		c := dialAnnouncing(t, p)
		getBig(t, c, bufio.NewReaderSize(c, 1<<20), size)
		if dst := parkedConn(t, p).dst(); dst != 19988 {
			t.Fatalf("the client's socket sends segments of %d bytes; the test meant 19988 (20000 announced, less TCP's timestamps)", dst)
		}
		wholeSegments(t, reads, 19988)
	})
	t.Run("upload, announced", func(t *testing.T) {
		reads := fullReads(t)
		postBig(t, startProxy(t, cfg).dial(), size)
		// The node's socket to the endpoint takes the 20000 bytes the
		// endpoint announced, less TCP's timestamps.
		wholeSegments(t, reads, 19988)
	})
	t.Run("download, loopback", func(t *testing.T) {
		p := startProxy(t, cfg)
		c := p.dial()
		br := bufio.NewReaderSize(c, 1<<20)
		// One body may end with the size a read took before the window
		// grew; the next bodies find the size it ends at.
		const most = 10
		var mss uint16
		var dst int
		for i := 0; i < most && (i == 0 || int(mss) != dst); i++ {
			getBig(t, c, br, size)
			cc := parkedConn(t, p)
			idlePark.mu.Lock()
			mss = cc.mss
			idlePark.mu.Unlock()
			dst = cc.dst()
		}
		if dst <= bigBufSize/2 {
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

// TestSplicedBodiesFollowPacing: a spliced body is read in as many whole
// segments of the socket it goes to as fit in the big buffer where that
// socket paces what it sends (BBR), three of 19988 bytes, as a copied one
// is; where it does not (CUBIC), in what the pipe holds at a time. Splices
// of up to 1 MiB cost a fifth more CPU per MiB than whole segments under
// BBR, which spaces a burst out by timers, and less under CUBIC, which
// sends it at once. Downloads run under each, set on the node's listening
// socket, whose connections take it on; uploads go to a socket the node
// dials, under the host's default.
func TestSplicedBodiesFollowPacing(t *testing.T) {
	const size = 16 << 20
	cfg := &Config{Director: &rrDirector{eps: []*upstream.Endpoint{bigBodies(t, size)}}}
	for _, tc := range []struct {
		cc    string
		paced bool
	}{{"bbr", true}, {"cubic", false}} {
		t.Run("download, "+tc.cc, func(t *testing.T) {
			p := startProxy(t, cfg)
			tcpsegtest.Congestion(t, p.ln.Listener.(*net.TCPListener), tc.cc)
			reads := fullReads(t)
			gets := splice.Gets()
			c := dialAnnouncing(t, p)
			getBig(t, c, bufio.NewReaderSize(c, 1<<20), size)
			followsPacing(t, reads, gets, tc.paced)
		})
	}
	t.Run("upload", func(t *testing.T) {
		def, err := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
		if err != nil {
			t.Skip(err)
		}
		reads := fullReads(t)
		gets := splice.Gets()
		postBig(t, startProxy(t, cfg).dial(), size)
		followsPacing(t, reads, gets, strings.HasPrefix(string(def), "bbr"))
	})
}

// followsPacing checks that a spliced body took a pipe since
// splice.Gets was gets, and that its reads that filled their room took
// three whole segments of 19988 bytes, if paced. If not, a read has the
// pipe's room, which it fills only when the pipe's worth was queued: none
// that filled its room took a big buffer's worth or less.
func followsPacing(t *testing.T, reads *tcpsegtest.Reads, gets uint64, paced bool) {
	t.Helper()
	if splice.Gets() == gets {
		t.Fatal("the body took no pipe: it was not spliced")
	}
	if paced {
		wholeSegments(t, reads, 19988)
		return
	}
	sizes := reads.Sizes()
	for _, n := range sizes {
		if n <= bigBufSize {
			t.Errorf("reads that filled their room took %v bytes, where splices take what the pipe holds", sizes)
			return
		}
	}
}

// bigBodies starts an endpoint that announces segments of 20000 bytes. It
// answers a GET with a body of size bytes, and a POST, whose body it takes,
// with an empty 200.
func bigBodies(t *testing.T, size int) *upstream.Endpoint {
	body := make([]byte, size)
	return upstream.New("web", "big", loopback.ServeWith(t, net.ListenConfig{Control: tcpsegtest.Announce(20000)}, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			length := int64(0)
			for {
				f, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if f == "\r\n" {
					break
				}
				if v, ok := strings.CutPrefix(strings.ToLower(f), "content-length: "); ok {
					length, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				}
			}
			if strings.HasPrefix(line, "POST ") {
				io.CopyN(io.Discard, br, length)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
				continue
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n")
			c.Write(body)
		}
	}))
}

// dialAnnouncing dials p from a socket that announces segments of 20000
// bytes; the connection closes when the test ends.
func dialAnnouncing(t *testing.T, p *proxy) net.Conn {
	t.Helper()
	d := net.Dialer{Control: tcpsegtest.Announce(20000)}
	c, err := d.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// getBig asks c for a bigBodies body of size bytes.
func getBig(t *testing.T, c net.Conn, br *bufio.Reader, size int) {
	t.Helper()
	c.SetDeadline(time.Now().Add(defaultTestTimeout))
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := readResponse(t, br, "GET"); r.code != 200 || len(r.body) != size {
		t.Fatalf("GET /big: %s with %d bytes, want 200 with %d", r.status, len(r.body), size)
	}
}

// postBig uploads size bytes over c to bigBodies.
func postBig(t *testing.T, c net.Conn, size int) {
	t.Helper()
	c.SetDeadline(time.Now().Add(defaultTestTimeout))
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n")
	if _, err := c.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	if r := readResponse(t, bufio.NewReader(c), "POST"); r.code != 200 {
		t.Fatalf("POST /up: %s, want 200", r.status)
	}
}

// parkedConn waits until p's one client connection has parked, and
// returns it.
func parkedConn(t *testing.T, p *proxy) *clientConn {
	t.Helper()
	var cc *clientConn
	waitCount(t, "connections of the proxy parked", func() int {
		p.srv.mu.Lock()
		defer p.srv.mu.Unlock()
		cc = p.srv.conns
		if cc == nil || cc.next != nil || !isParked(cc.state.Load()) {
			return 0
		}
		return 1
	}, 1)
	return cc
}

// dst returns the segment size cc's socket reports.
func (cc *clientConn) dst() (mss int) {
	cc.raw.Control(func(fd uintptr) { mss = int(tcpseg.MSS(int(fd))) })
	return mss
}

// fullReads records the sizes of the reads of large bodies that filled
// their room (onFullRead) until the test ends.
func fullReads(t *testing.T) *tcpsegtest.Reads {
	r := new(tcpsegtest.Reads)
	f := r.Add
	onFullRead.Store(&f)
	t.Cleanup(func() { onFullRead.Store(nil) })
	return r
}

// wholeSegments checks that the reads of a body that filled their room
// took three segments of mss bytes, but for the first: that one filled
// the whole buffer, before the size was known.
func wholeSegments(t *testing.T, reads *tcpsegtest.Reads, mss int) {
	t.Helper()
	if whole, other := reads.Count(3 * mss); whole == 0 || len(other) > 1 {
		t.Errorf("%d reads took three whole segments of %d bytes; others took %v (one may: the first, of %d bytes)", whole, mss, other, bigBufSize)
	}
}
