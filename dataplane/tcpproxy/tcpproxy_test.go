package tcpproxy

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	"github.com/sluice-lb/sluice/dataplane/lb"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

const testTimeout = 5 * time.Second

// fixedDirector hands out endpoints in order, cycling.
type fixedDirector struct {
	eps  []*upstream.Endpoint
	next atomic.Int64
}

func (d *fixedDirector) Pick(net.Addr) (*upstream.Endpoint, time.Duration, error) {
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.ServeConn(c.(*net.TCPConn))
		}
	}()
	return ln.Addr().String()
}

// startBackend runs handle for each connection on a fresh loopback port.
func startBackend(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return ln.Addr().String()
}

func recorder() (func(*conntrack.ConnInfo), chan *conntrack.ConnInfo) {
	ch := make(chan *conntrack.ConnInfo, 16)
	return func(ci *conntrack.ConnInfo) { ch <- ci }, ch
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

// TestConnectRetry: a dead endpoint is skipped for the next one.
func TestConnectRetry(t *testing.T) {
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	live := startBackend(t, func(c net.Conn) { c.Write([]byte("live")); c.Close() })
	onClose, infos := recorder()
	d := &fixedDirector{eps: []*upstream.Endpoint{upstream.New("c", "dead", deadAddr), upstream.New("c", "live", live)}}
	addr := startProxy(t, NewServer(&Config{Listener: "l", Director: d}, onClose))
	c, _ := net.Dial("tcp", addr)
	c.SetDeadline(time.Now().Add(testTimeout))
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "live" {
		t.Fatalf("read %q, want live", got)
	}
	if ci := waitInfo(t, infos); ci.Endpoint != "live" {
		t.Errorf("endpoint = %q, want live", ci.Endpoint)
	}
	if n := d.eps[0].Inflight(); n != 0 {
		t.Errorf("dead endpoint inflight = %d after failed connect, want 0", n)
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
	backend := startBackend(t, func(c net.Conn) { io.Copy(c, c) })
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
