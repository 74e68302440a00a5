package tcpproxy

import (
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

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
// ask again as the burst goes on.
func TestBurstReadsFillWholeSegments(t *testing.T) {
	splicetest.Set(t, "copied") // as the node copies bursts between loopback peers
	t.Run("announced", func(t *testing.T) {
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
		whole, other := reads.Count(3 * mss[0].dst)
		if whole == 0 || len(other) > 2 {
			t.Errorf("%d reads filled three whole segments of %d bytes; others took %v (at most two may: one per half, of %d bytes)", whole, mss[0].dst, other, copyBufSize)
		}
	})
	t.Run("loopback", func(t *testing.T) {
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
	})
}

// fullReads records the sizes of the reads that filled their room
// (onFullRead) until the test ends.
func fullReads(t *testing.T) *tcpsegtest.Reads {
	r := new(tcpsegtest.Reads)
	f := r.Add
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
