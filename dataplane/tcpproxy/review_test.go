package tcpproxy

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestClosedDuringDrainIsNotDrained: a session whose client closes it
// while its endpoint drains, before drain_timeout, ended because the
// client closed it, and its record says so; DRAINED is for the sessions
// the drain timeout closed.
func TestClosedDuringDrainIsNotDrained(t *testing.T) {
	backend := startBackend(t, echo)
	onClose, infos := recorder()
	ep := upstream.New("c", "e", backend)
	addr := startProxy(t, NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, onClose))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	c.Write([]byte("ping"))
	if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
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
