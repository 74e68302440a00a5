package tcpproxy

import (
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	"github.com/sluice-lb/sluice/dataplane/lb"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

const testTimeout = 5 * time.Second

// fixedDirector hands out endpoints in order, cycling.
type fixedDirector struct {
	eps  []*upstream.Endpoint
	next atomic.Int64
}

func (d *fixedDirector) Pick(net.Addr, *Attempt) (*upstream.Endpoint, time.Duration, error) {
	if len(d.eps) == 0 {
		return nil, 0, lb.ErrNoEndpoint
	}
	ep := d.eps[int(d.next.Add(1)-1)%len(d.eps)]
	ep.Acquire()
	return ep, time.Second, nil
}

// startProxy serves a TCP listener with s and returns its address.
func startProxy(t *testing.T, s *Server) string {
	t.Helper()
	return loopback.Serve(t, func(c net.Conn) { s.ServeConn(c.(*net.TCPConn)) })
}

// startBackend runs handle for each connection on a fresh loopback port.
func startBackend(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	return loopback.Serve(t, handle)
}

func recorder() (func(*conntrack.ConnInfo), chan *conntrack.ConnInfo) {
	ch := make(chan *conntrack.ConnInfo, 16)
	return func(ci *conntrack.ConnInfo) { ch <- ci }, ch
}

// pingSession starts a server that proxies to one endpoint at backend
// (which must send back the 4 bytes it is sent first) and records its
// sessions in infos, and opens a session through it that carried "ping"
// there and back. The session closes when the test ends, if not before.
func pingSession(t *testing.T, backend string) (c net.Conn, ep *upstream.Endpoint, s *Server, infos chan *conntrack.ConnInfo) {
	t.Helper()
	onClose, infos := recorder()
	ep = upstream.New("c", "e", backend)
	s = NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, onClose)
	c, err := net.Dial("tcp", startProxy(t, s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	c.Write([]byte("ping"))
	if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	return c, ep, s, infos
}

func waitInfo(t *testing.T, ch chan *conntrack.ConnInfo) *conntrack.ConnInfo {
	t.Helper()
	select {
	case ci := <-ch:
		return ci
	case <-time.After(testTimeout):
		t.Fatal("no connection record")
		return nil
	}
}

// TestHalfClose: the client sends a request and half-closes; the backend
// reads to EOF, answers and closes. The client must get the whole answer.
func TestHalfClose(t *testing.T) {
	backend := startBackend(t, func(c net.Conn) {
		defer c.Close()
		in, _ := io.ReadAll(c) // ends at the client's half-close
		c.Write([]byte("got " + string(in)))
	})
	onClose, infos := recorder()
	ep := upstream.New("db", "db1", backend)
	addr := startProxy(t, NewServer(&Config{Listener: "db", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, onClose))

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	c.Write([]byte("hello"))
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "got hello" {
		t.Fatalf("read %q, %v; want %q", got, err, "got hello")
	}
	ci := waitInfo(t, infos)
	if ci.BytesIn != 5 || ci.BytesOut != 9 || ci.Cluster != "db" || ci.Endpoint != "db1" || ci.Listener != "db" {
		t.Errorf("record = %+v; want 5 bytes in, 9 out, db/db1 on listener db", ci)
	}
	if ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED {
		t.Errorf("reason = %v, want CLIENT_CLOSED", ci.Reason)
	}
	if ep.Inflight() != 0 || ep.Conns() != 0 {
		t.Errorf("endpoint after session: inflight %d conns %d, want 0 0", ep.Inflight(), ep.Conns())
	}
}

func TestServerCloses(t *testing.T) {
	backend := startBackend(t, func(c net.Conn) {
		c.Write([]byte("bye"))
		c.Close()
	})
	onClose, infos := recorder()
	addr := startProxy(t, NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{upstream.New("c", "e", backend)}}}, onClose))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	got, _ := io.ReadAll(c) // the proxy half-closes towards us
	c.Close()
	if string(got) != "bye" {
		t.Fatalf("read %q, want bye", got)
	}
	if ci := waitInfo(t, infos); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED {
		t.Errorf("reason = %v, want SERVER_CLOSED", ci.Reason)
	}
}

// deadAddr returns a loopback address nothing listens on: connects to it
// are refused.
func deadAddr(t *testing.T) string {
	t.Helper()
	return loopback.FreeAddr(t) // below the ephemeral range: not taken again meanwhile
}

// firstDirector picks the first endpoint that has not failed for the
// session, as a hash policy that always lands on eps[0] would if it
// skipped failed endpoints; it records what Attempt reported on each pick.
type firstDirector struct {
	eps []*upstream.Endpoint

	mu     sync.Mutex
	picks  []string   // name of each endpoint picked, in order
	failed [][]string // for each pick, the names Attempt.Failed reported
}

func (d *firstDirector) Pick(_ net.Addr, a *Attempt) (*upstream.Endpoint, time.Duration, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var failed []string
	for _, ep := range d.eps {
		if a.Failed(ep) {
			failed = append(failed, ep.Name)
		}
	}
	d.failed = append(d.failed, failed)
	for _, ep := range d.eps {
		if !a.Failed(ep) {
			d.picks = append(d.picks, ep.Name)
			ep.Acquire()
			return ep, time.Second, nil
		}
	}
	return nil, 0, lb.ErrNoEndpoint
}

// echo serves each connection by echoing it back.
func echo(c net.Conn) {
	defer c.Close()
	io.Copy(c, c)
}

// roundTrip sends msg through the proxy at addr, half-closes, and returns
// what came back.
func roundTrip(t *testing.T, addr, msg string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	c.Write([]byte(msg))
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(c)
	return string(got)
}

// TestConnectRetry: a session whose endpoint refuses the connection is
// redispatched to another one, which the Director learns through Attempt;
// with no retries the session is closed.
func TestConnectRetry(t *testing.T) {
	for _, tt := range []struct {
		name    string
		retries int
		want    string // what the client reads back
		picks   []string
		reason  sluicev1.CloseReason
	}{
		{"retries 3", 3, "ping", []string{"dead", "live"}, sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED},
		{"retries 1", 1, "ping", []string{"dead", "live"}, sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED},
		{"no retries", 0, "", []string{"dead"}, sluicev1.CloseReason_CLOSE_REASON_NO_ENDPOINT},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dead := upstream.New("c", "dead", deadAddr(t))
			live := upstream.New("c", "live", startBackend(t, echo))
			d := &firstDirector{eps: []*upstream.Endpoint{dead, live}}
			onClose, infos := recorder()
			addr := startProxy(t, NewServer(&Config{Listener: "l", Director: d, Retries: tt.retries}, onClose))

			if got := roundTrip(t, addr, "ping"); got != tt.want {
				t.Errorf("client read %q, want %q", got, tt.want)
			}
			ci := waitInfo(t, infos)
			wantRetries, wantEndpoint := uint64(len(tt.picks)-1), tt.picks[len(tt.picks)-1]
			if ci.Reason != tt.reason || ci.Retries != wantRetries || (tt.want != "" && ci.Endpoint != wantEndpoint) {
				t.Errorf("record: reason %v, %d retries, endpoint %q; want %v, %d, %q", ci.Reason, ci.Retries, ci.Endpoint, tt.reason, wantRetries, wantEndpoint)
			}
			d.mu.Lock()
			if !slices.Equal(d.picks, tt.picks) {
				t.Errorf("picks %v, want %v", d.picks, tt.picks)
			}
			if len(d.failed) != len(tt.picks) || len(d.failed[0]) != 0 || len(tt.picks) > 1 && !slices.Equal(d.failed[1], []string{"dead"}) {
				t.Errorf("Attempt.Failed reported %v on the picks, want [] then [dead]", d.failed)
			}
			d.mu.Unlock()
			if dead.Inflight() != 0 || live.Inflight() != 0 {
				t.Errorf("inflight dead %d live %d after the session, want 0 0", dead.Inflight(), live.Inflight())
			}
		})
	}
}

// TestConnectRetriesRunOut: when every endpoint refuses, the session tries
// 1+Retries of them and closes; each failed attempt released its endpoint.
func TestConnectRetriesRunOut(t *testing.T) {
	var eps []*upstream.Endpoint
	for _, n := range []string{"a", "b", "c", "d"} {
		eps = append(eps, upstream.New("c", n, deadAddr(t)))
	}
	d := &fixedDirector{eps: eps}
	onClose, infos := recorder()
	addr := startProxy(t, NewServer(&Config{Listener: "l", Director: d, Retries: 2}, onClose))
	if got := roundTrip(t, addr, "ping"); got != "" {
		t.Errorf("client read %q, want nothing", got)
	}
	ci := waitInfo(t, infos)
	if ci.Reason != sluicev1.CloseReason_CLOSE_REASON_NO_ENDPOINT || ci.Retries != 2 {
		t.Errorf("record: reason %v, %d retries; want NO_ENDPOINT, 2", ci.Reason, ci.Retries)
	}
	if n := d.next.Load(); n != 3 {
		t.Errorf("%d picks, want 3 (1 + 2 retries)", n)
	}
	for _, ep := range eps {
		if ep.Inflight() != 0 || ep.Conns() != 0 {
			t.Errorf("%s: inflight %d conns %d, want 0 0", ep.Name, ep.Inflight(), ep.Conns())
		}
	}
}

// TestRetiredEndpointIsNotARetry: an endpoint shut down by an apply between
// the pick and the connect is picked around even without retries, and the
// pick again is not counted as one.
func TestRetiredEndpointIsNotARetry(t *testing.T) {
	gone := upstream.New("c", "gone", startBackend(t, echo))
	gone.Shutdown()
	live := upstream.New("c", "live", startBackend(t, echo))
	d := &firstDirector{eps: []*upstream.Endpoint{gone, live}}
	onClose, infos := recorder()
	addr := startProxy(t, NewServer(&Config{Listener: "l", Director: d}, onClose))
	if got := roundTrip(t, addr, "ping"); got != "ping" {
		t.Errorf("client read %q, want ping", got)
	}
	if ci := waitInfo(t, infos); ci.Endpoint != "live" || ci.Retries != 0 {
		t.Errorf("record: endpoint %q, %d retries; want live, 0", ci.Endpoint, ci.Retries)
	}
}

func TestNoEndpoint(t *testing.T) {
	onClose, infos := recorder()
	addr := startProxy(t, NewServer(&Config{Listener: "l", Director: &fixedDirector{}}, onClose))
	c, _ := net.Dial("tcp", addr)
	c.SetDeadline(time.Now().Add(testTimeout))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read %d, %v; want EOF", n, err)
	}
	if ci := waitInfo(t, infos); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_NO_ENDPOINT {
		t.Errorf("reason = %v, want NO_ENDPOINT", ci.Reason)
	}
}

// TestShutdownEndpoint: Endpoint.Shutdown (drain) ends a busy session.
func TestShutdownEndpoint(t *testing.T) {
	c, ep, _, infos := pingSession(t, startBackend(t, func(c net.Conn) { io.Copy(c, c) }))
	ep.Shutdown()
	if _, err := io.ReadAll(c); err != nil && !isReset(err) {
		t.Fatalf("after shutdown: %v", err)
	}
	if ci := waitInfo(t, infos); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_DRAINED {
		t.Errorf("reason = %v, want DRAINED", ci.Reason)
	}
}

// isReset reports a socket error such as a reset, which is an acceptable
// way for a drained session to end.
func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op)
}

// TestShutdownSessions: Endpoint.ShutdownSessions ends a busy session,
// which records SHUTDOWN, and the endpoint still takes the next one,
// which ends as its client closes it.
func TestShutdownSessions(t *testing.T) {
	backend := startBackend(t, echo)
	onClose, infos := recorder()
	ep := upstream.New("c", "e", backend)
	addr := startProxy(t, NewServer(&Config{Listener: "l", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, onClose))
	c, _ := net.Dial("tcp", addr)
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if n := ep.ShutdownSessions(); n != 1 {
		t.Errorf("ShutdownSessions closed %d connections, want 1", n)
	}
	if _, err := io.ReadAll(c); err != nil && !isReset(err) {
		t.Fatalf("after shutdown: %v", err)
	}
	if ci := waitInfo(t, infos); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_SHUTDOWN {
		t.Errorf("reason = %v, want SHUTDOWN", ci.Reason)
	}
	if got := roundTrip(t, addr, "again"); got != "again" {
		t.Errorf("session after the shutdown read %q, want again", got)
	}
	if ci := waitInfo(t, infos); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED {
		t.Errorf("reason of the next session = %v, want CLIENT_CLOSED", ci.Reason)
	}
}
