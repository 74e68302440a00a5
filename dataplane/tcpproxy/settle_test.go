package tcpproxy

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/testcert"
)

// TestOpenSessionsBytesAreCounted: the bytes of a session that stays open
// show in its endpoint's, cluster's and listener's counters within a
// settle of moving, not only when it ends; once it ended, each byte is
// counted once. Both directions are counted through the kernel's path
// (plain) and through a TLS connection's buffer (an endpoint over TLS).
func TestOpenSessionsBytesAreCounted(t *testing.T) {
	echo := func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * testTimeout))
		io.Copy(c, c)
	}
	ca := testcert.NewCA(t)
	srvCfg := &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1")}}
	for _, tt := range []struct {
		name     string
		endpoint func() *upstream.Endpoint
	}{
		{"plain", func() *upstream.Endpoint { return upstream.New("c", "e", startBackend(t, echo)) }},
		{"tls", func() *upstream.Endpoint {
			ep := upstream.New("c", "e", startBackend(t, func(c net.Conn) { echo(tls.Server(c, srvCfg)) }))
			ep.SetTLS(&tls.Config{RootCAs: ca.Pool()})
			return ep
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ep := tt.endpoint()
			cm, lm := meter.NewCluster("c"), meter.NewListener("l", nil)
			ep.SetMeter(cm)
			onClose, infos := recorder()
			s := NewServer(&Config{Listener: "l", Meter: lm, Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, onClose)
			c, err := net.Dial("tcp", startProxy(t, s))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * testTimeout))
			exchange := func(n int) {
				t.Helper()
				msg := strings.Repeat("x", n)
				c.Write([]byte(msg))
				if got, err := io.ReadFull(c, make([]byte, n)); err != nil {
					t.Fatalf("echo: %d bytes, %v", got, err)
				}
			}
			counted := func() (e, cl, l [2]uint64) {
				st, cc, lc := ep.Stats(), cm.Counts(), lm.Counts()
				// The endpoint's in is the client's out.
				return [2]uint64{st.BytesOut, st.BytesIn}, [2]uint64{cc.BytesOut, cc.BytesIn}, [2]uint64{lc.BytesIn, lc.BytesOut}
			}
			waitCounted := func(want uint64) {
				t.Helper()
				deadline := time.Now().Add(meter.SettleEvery + testTimeout)
				for {
					e, cl, l := counted()
					w := [2]uint64{want, want}
					if e == w && cl == w && l == w {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("counted (client to endpoint, back): endpoint %v, cluster %v, listener %v; want %v each", e, cl, l, w)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}

			exchange(1000)
			waitCounted(1000) // the session is still open
			exchange(500)
			waitCounted(1500)
			c.Close()
			ci := waitInfo(t, infos)
			if ci.BytesIn != 1500 || ci.BytesOut != 1500 {
				t.Errorf("record: %d bytes in, %d out; want 1500 each", ci.BytesIn, ci.BytesOut)
			}
			e, cl, l := counted()
			if w := [2]uint64{1500, 1500}; e != w || cl != w || l != w {
				t.Errorf("counted once ended: endpoint %v, cluster %v, listener %v; want %v each", e, cl, l, w)
			}
		})
	}
}

// TestSettleScanOnlyWhileBytesMove: a server's settle scan is set when a
// session's bytes move and not otherwise: a new server and one whose
// sessions went quiet since the last scan have none waiting, and a closed
// one sets none.
func TestSettleScanOnlyWhileBytesMove(t *testing.T) {
	lm := meter.NewListener("l", nil)
	s := NewServer(&Config{Meter: lm}, nil)
	ep := upstream.New("c", "e", "127.0.0.1:1")
	ss := &session{srv: s, ep: ep, cfg: s.cfg.Load()}
	ss.up.s, ss.down.s, ss.down.toClient = ss, ss, true
	armed := func() bool { return s.settle.timer.Stop() } // and stops it: the test scans by hand
	counted := func() uint64 { return lm.Counts().BytesIn }

	if armed() {
		t.Error("a new server's scan is set")
	}
	for i, step := range []struct {
		sent int64
		want uint64
	}{{10, 10}, {5, 15}} {
		ss.up.sent(step.sent)
		if !armed() {
			t.Fatalf("scan %d: bytes moved, and no scan is set", i+1)
		}
		s.settleAll()
		if got := counted(); got != step.want {
			t.Errorf("after scan %d, the listener counted %d bytes in; want %d", i+1, got, step.want)
		}
		if armed() {
			t.Errorf("after scan %d: nothing moved since, and a scan is set", i+1)
		}
	}
	s.MarkClosing()
	ss.up.sent(1)
	if armed() {
		t.Error("a closed server set a scan")
	}
}
