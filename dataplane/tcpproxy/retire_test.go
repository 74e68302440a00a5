package tcpproxy

import (
	"io"
	"net"
	"runtime"
	"testing"
	"time"
	"weak"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestClosedDuringDrainIsNotDrained: a session whose client closes it
// while its endpoint drains, before drain_timeout, ended because the
// client closed it, and its record says so; DRAINED is for the sessions
// the drain timeout closed.
func TestClosedDuringDrainIsNotDrained(t *testing.T) {
	c, ep, _, infos := pingSession(t, startBackend(t, echo))
	ep.Retire(time.Minute, time.Minute) // drain_timeout 1m: the session may live on
	defer ep.Shutdown()
	c.Write([]byte("pong"))
	if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
		t.Fatalf("session during the drain: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("after the client's close: %v", err)
	}
	ci := waitInfo(t, infos)
	if ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED || ci.BytesIn != 8 || ci.BytesOut != 8 {
		t.Errorf("record: reason %v, %d bytes in, %d out; want CLIENT_CLOSED, 8, 8", ci.Reason, ci.BytesIn, ci.BytesOut)
	}
}

// TestRetiredEndpointForgotten: a listener that served sessions to an
// endpoint lets go of it once it is retired, also when its sessions had
// all ended before: endpoints that come and go (a deploy, DNS) do not
// pile up in a node that runs for months. The idle timeout's scans are
// what forget such an endpoint: the timeout is short enough for several
// of them before the test gives up, and long enough that a stall cannot
// have it close a session in the middle of its round trip.
func TestRetiredEndpointForgotten(t *testing.T) {
	const idle = time.Second
	backend := startBackend(t, echo)
	onClose, infos := recorder()
	s := NewServer(&Config{Listener: "l", Director: &fixedDirector{}, IdleTimeout: idle}, onClose)
	addr := startProxy(t, s)
	gone := func() weak.Pointer[upstream.Endpoint] {
		ep := upstream.New("c", "e", backend)
		s.SetConfig(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}, IdleTimeout: idle})
		if got := roundTrip(t, addr, "ping"); got != "ping" {
			t.Fatalf("read %q, want ping", got)
		}
		waitInfo(t, infos)
		// The apply that removes it: no listener picks it, it is retired.
		other := upstream.New("c", "other", backend)
		s.SetConfig(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{other}}, IdleTimeout: idle})
		ep.Retire(0, 0)
		return weak.Make(ep)
	}()
	// Sessions go on with the other endpoint (and whatever served the
	// last one's bytes moves on to them).
	if got := roundTrip(t, addr, "ping"); got != "ping" {
		t.Fatalf("read %q, want ping", got)
	}
	waitInfo(t, infos)
	waitUntil(t, "the retired endpoint collected", func() bool {
		runtime.GC()
		return gone.Value() == nil
	})
}
