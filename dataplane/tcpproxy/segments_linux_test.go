package tcpproxy

import (
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/internal/splice"
	"github.com/sluice-lb/sluice/dataplane/internal/splice/splicetest"
	"github.com/sluice-lb/sluice/dataplane/internal/tcpseg"
	"github.com/sluice-lb/sluice/dataplane/internal/tcpseg/tcpsegtest"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
)

// mssOf returns what the socket under rc reports as its segment size.
func mssOf(rc syscall.RawConn) (mss int) {
	rc.Control(func(fd uintptr) { mss = int(tcpseg.MSS(int(fd))) })
	return mss
}

// TestBurstReadsFillWholeSegments: after a burst each way, each half reads
// as many whole segments of its destination as fit in its buffer, by the
// size its destination's socket reports once the burst is over. With the
// client and the endpoint announcing segments of 20000 bytes, that is
// three of 19988 (the rest is TCP's timestamps), where a 64 KiB read went
// out as three and a short fourth. Over loopback it is one of 65483 bytes
// (65464 over IPv6), where a 64 KiB read went out as that and one of 53,
// which cost the node twice the CPU per MiB; early in a connection the
// socket reports less (half the peer's largest window), so the half must
// ask again as the burst goes on. The bursts are copied, as the node
// copies those between loopback peers; the loopback case runs spliced too.
// TestSplicedBurstsFollowPacing has what spliced bursts read.
func TestBurstReadsFillWholeSegments(t *testing.T) {
	t.Run("announced", func(t *testing.T) {
		splicetest.Set(t, "copied") // TestSplicedBurstsFollowPacing has the spliced bursts
		announcedBursts(t)
	})
	t.Run("loopback", func(t *testing.T) { splicetest.Each(t, loopbackBursts, true) })
}

// TestSplicedBurstsFollowPacing: a spliced burst to a client whose socket
// on the node paces what it sends (BBR) is read in as many whole segments
// as fit in the buffer, three of 19988 bytes, as a copied one is; to one
// that does not (CUBIC), in what the pipe holds at a time. Splices of up
// to 1 MiB cost a fifth more CPU per MiB than whole segments under BBR,
// which spaces a burst out by timers, and less under CUBIC, which sends it
// at once.
func TestSplicedBurstsFollowPacing(t *testing.T) {
	for _, tc := range []struct {
		cc    string
		paced bool
	}{{"bbr", true}, {"cubic", false}} {
		t.Run(tc.cc, func(t *testing.T) {
			const size = 16 << 20
			ep := upstream.New("c", "e", startBackend(t, func(c net.Conn) {
				defer c.Close()
				if _, err := c.Read(make([]byte, 1)); err == nil {
					c.Write(make([]byte, size))
				}
			}))
			s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, nil)
			// The node's socket to the client sends under tc.cc, set
			// here before the node serves it.
			accepted, set := make(chan *net.TCPConn), make(chan struct{})
			addr := loopback.Serve(t, func(c net.Conn) {
				accepted <- c.(*net.TCPConn)
				<-set
				s.ServeConn(c.(*net.TCPConn))
			})
			d := net.Dialer{Control: tcpsegtest.Announce(20000)}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			func() {
				defer close(set)
				tcpsegtest.Congestion(t, <-accepted, tc.cc)
			}()
			reads := fullReads(t)
			gets := splice.Gets()
			c.SetDeadline(time.Now().Add(4 * testTimeout))
			c.Write([]byte{'>'})
			if n, err := io.Copy(io.Discard, c); n != size {
				t.Fatalf("read %d bytes of %d: %v", n, size, err)
			}
			if splice.Gets() == gets {
				t.Fatal("the burst took no pipe: it was not spliced")
			}
			const seg = 19988 // 20000 announced, less TCP's timestamps
			// Paced, every splice that filled its room took three whole
			// segments (the half knew the size from the copied reads
			// before it took a pipe), and one at least did. Not paced,
			// a splice has the pipe's room, which it fills only when
			// the pipe's worth was queued.
			whole, other := reads.spliced.Count(3 * seg)
			switch {
			case tc.paced && (whole == 0 || len(other) > 0):
				t.Errorf("%d splices took three whole segments of %d bytes and others %v, where all take three", whole, seg, other)
			case !tc.paced && whole > 0:
				t.Errorf("%d splices took three whole segments of %d bytes (others %v), where they take what the pipe holds", whole, seg, other)
			}
		})
	}
}

// announcedBursts is TestBurstReadsFillWholeSegments with sockets that
// announce segments of 20000 bytes.
func announcedBursts(t *testing.T) {
	reads := fullReads(t)
	mss := burstBothWays(t, tcpsegtest.Announce(20000), 4<<20)
	for _, h := range mss {
		if h.dst > 20000 || h.dst < 19900 {
			t.Fatalf("%s: the destination sends segments of %d bytes; the test meant at most 20000, less TCP's options", h.name, h.dst)
		}
	}
	// Each half's first read that filled its room filled the whole
	// buffer, before it knew the size; every later one took three
	// segments.
	whole, other := reads.copied.Count(3 * mss[0].dst)
	if whole == 0 || len(other) > 2 {
		t.Errorf("%d reads filled three whole segments of %d bytes; others took %v (at most two may: one per half, of %d bytes)", whole, mss[0].dst, other, copyBufSize)
	}
}

// loopbackBursts is TestBurstReadsFillWholeSegments over loopback.
func loopbackBursts(t *testing.T) {
	// One way, from an endpoint that sends each burst in one write.
	// A half asks again only after a read that filled its room, so
	// a burst whose last such read came while the window still grew
	// leaves it with a smaller size than its destination's; the
	// next bursts then find the size it ends at.
	const size, bursts = 16 << 20, 10
	ep := upstream.New("c", "e", startBackend(t, func(c net.Conn) {
		defer c.Close()
		for {
			if _, err := c.Read(make([]byte, 1)); err != nil {
				return
			}
			c.Write(make([]byte, size))
		}
	}))
	s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, nil)
	c := dialClient(t, startProxy(t, s))
	buf := make([]byte, 1<<20)
	var mss uint16
	var dst int
	for i := 0; i < bursts && (i == 0 || int(mss) != dst); i++ {
		c.SetDeadline(time.Now().Add(4 * testTimeout))
		c.Write([]byte{'>'})
		for n := 0; n < size; {
			m, err := c.Read(buf)
			if err != nil {
				t.Fatalf("burst %d: read %d bytes of %d: %v", i+1, n, size, err)
			}
			n += m
		}
		waitParked(t, s, ep, 1)
		parking.mu.Lock()
		ss := s.sessions.list(ep).head
		mss = ss.down.mss
		parking.mu.Unlock()
		dst = mssOf(ss.clientRC)
	}
	if dst <= copyBufSize/2 {
		t.Fatalf("the client's socket sends segments of %d bytes; over loopback, with the window grown, they take 64 KiB less TCP's headers", dst)
	}
	if int(mss) != dst {
		t.Errorf("after %d bursts, the half to the client reads by segments of %d bytes; the client's socket sends %d", bursts, mss, dst)
	}
	if got := tcpseg.Fit(copyBufSize, int(mss)); got != dst {
		t.Errorf("a read takes %d bytes, want %d (one segment)", got, dst)
	}
}

// burstReads are the sizes of the reads that filled their room, copied
// and spliced.
type burstReads struct{ copied, spliced tcpsegtest.Reads }

// fullReads records the sizes of the reads that filled their room
// (onFullRead) until the test ends.
func fullReads(t *testing.T) *burstReads {
	r := new(burstReads)
	f := func(n int, spliced bool) {
		if spliced {
			r.spliced.Add(n)
		} else {
			r.copied.Add(n)
		}
	}
	onFullRead.Store(&f)
	t.Cleanup(func() { onFullRead.Store(nil) })
	return r
}

// halfMSS is what a half of a session took as its destination's segment
// size, and what that destination reports.
type halfMSS struct {
	name string
	mss  uint16
	dst  int
}

// burstBothWays sends size bytes through a session to an echoing endpoint
// and reads them back, with control on the client's and the endpoint's
// sockets, and says, once the session has parked, what segment size each
// half took and what its destination reports.
func burstBothWays(t *testing.T, control func(string, string, syscall.RawConn) error, size int64) []halfMSS {
	ep := upstream.New("c", "e", loopback.ServeWith(t, net.ListenConfig{Control: control}, echo))
	s := NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, nil)
	d := net.Dialer{Control: control}
	c, err := d.Dial("tcp", startProxy(t, s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(4 * testTimeout))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := io.CopyN(c, zeros{}, size); err != nil {
			t.Errorf("write: %v", err)
		}
	}()
	if _, err := io.CopyN(io.Discard, c, size); err != nil {
		t.Fatalf("read back: %v", err)
	}
	wg.Wait()

	waitParked(t, s, ep, 1)
	parking.mu.Lock()
	ss := s.sessions.list(ep).head
	up, down := ss.up.mss, ss.down.mss
	parking.mu.Unlock()
	halves := []halfMSS{{"client to endpoint", up, mssOf(ss.rawRC)}, {"endpoint to client", down, mssOf(ss.clientRC)}}
	for _, h := range halves {
		if int(h.mss) != h.dst {
			t.Errorf("%s: the half reads by segments of %d bytes; its destination sends %d", h.name, h.mss, h.dst)
		}
	}
	return halves
}

// zeros reads as endless zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
