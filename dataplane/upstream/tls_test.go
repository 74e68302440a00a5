package upstream

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/loopback"
	"github.com/sluice-lb/sluice/internal/testcert"
)

// tlsListen serves TLS with cert on a loopback port; every connection
// completes its handshake, says "x", then reads until the client leaves.
func tlsListen(t *testing.T, cert tls.Certificate) string {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	return loopback.Serve(t, func(raw net.Conn) {
		c := tls.Server(raw, cfg)
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if c.Handshake() == nil {
			c.Write([]byte("x"))
		}
		io.Copy(io.Discard, c)
	})
}

// TestDialTLS: an endpoint given a cluster's TLS configuration verifies
// the endpoint's certificate against the IP of its address by default,
// resumes its session when it dials again, and counts a certificate it
// cannot verify as a failed connect.
func TestDialTLS(t *testing.T) {
	ca := testcert.NewCA(t)
	ctx := context.Background()

	ep := New("c", "e", tlsListen(t, ca.Server(t, "127.0.0.1")))
	ep.SetTLS(&tls.Config{RootCAs: ca.Pool()})
	if ep.TLSConfig() == nil || ep.TLSConfig().ServerName != "127.0.0.1" {
		t.Fatalf("TLSConfig = %v, want one with ServerName 127.0.0.1", ep.TLSConfig())
	}
	for i, wantResumed := range []bool{false, true} {
		c, err := ep.Dial(ctx, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		tc, ok := c.(*tls.Conn)
		if !ok {
			t.Fatalf("dial %d: got a %T, want a *tls.Conn", i, c)
		}
		if TCPConn(c) == nil {
			t.Errorf("dial %d: TCPConn is nil", i)
		}
		// TLS 1.3 sends the ticket after the handshake, before the
		// server's first byte: reading that byte gets the ticket.
		tc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(tc, make([]byte, 1)); err != nil {
			t.Fatalf("dial %d: read: %v", i, err)
		}
		if got := tc.ConnectionState().DidResume; got != wantResumed {
			t.Errorf("dial %d: resumed %v, want %v", i, got, wantResumed)
		}
		ep.Close(c)
	}

	// Signed by another authority, or for another name: not trusted.
	for name, cert := range map[string]tls.Certificate{
		"unknown authority": testcert.NewCA(t).Server(t, "127.0.0.1"),
		"other name":        ca.Server(t, "a.example"),
	} {
		bad := New("c", "bad", tlsListen(t, cert))
		bad.SetTLS(&tls.Config{RootCAs: ca.Pool()})
		_, err := bad.Dial(ctx, 5*time.Second)
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s: dial error %v, want one about the certificate", name, err)
		}
		if st := bad.Stats(); st.ConnectErrors != 1 || bad.Conns() != 0 {
			t.Errorf("%s: %d connect errors and %d conns, want 1 and 0", name, st.ConnectErrors, bad.Conns())
		}
	}

	// A server_name of the cluster's names what the certificate must.
	named := New("c", "named", tlsListen(t, ca.Server(t, "a.example")))
	named.SetTLS(&tls.Config{RootCAs: ca.Pool(), ServerName: "a.example"})
	c, err := named.Dial(ctx, 5*time.Second)
	if err != nil {
		t.Fatalf("server_name a.example: %v", err)
	}
	named.Close(c)
}

// TestSetTLSPool: turning TLS on empties the pool of plain connections,
// and a plain connection busy meanwhile is closed rather than pooled;
// the same configuration again changes nothing.
func TestSetTLSPool(t *testing.T) {
	ca := testcert.NewCA(t)
	ep := New("c", "e", listen(t))
	ctx := context.Background()
	idle, _ := ep.Dial(ctx, time.Second)
	busy, _ := ep.Dial(ctx, time.Second)
	ep.PutIdle(idle, Pooled{})

	cfg := &tls.Config{RootCAs: ca.Pool()}
	ep.SetTLS(cfg)
	if !closed(idle) {
		t.Error("the idle plain connection survived SetTLS")
	}
	ep.PutIdle(busy, Pooled{})
	if got, _, _ := ep.GetIdleSince(); !closed(busy) || got != nil || ep.Conns() != 0 {
		t.Errorf("a plain connection was pooled for a TLS endpoint (conns %d)", ep.Conns())
	}
	first := ep.TLSConfig()
	ep.SetTLS(cfg)
	if ep.TLSConfig() != first {
		t.Error("SetTLS with the same configuration made a new one")
	}
	ep.SetTLS(nil)
	if ep.TLSConfig() != nil {
		t.Error("SetTLS(nil) left TLS on")
	}
	if c, err := ep.Dial(ctx, time.Second); err != nil {
		t.Fatal(err)
	} else if _, ok := c.(*net.TCPConn); !ok {
		t.Errorf("plain again: got a %T", c)
	}
}

// TestCloseTLSStalled: closing a TLS connection whose endpoint stopped
// reading does not wait for room for the close_notify alert (crypto/tls
// waits up to 5 s): a request that timed out on such an endpoint was
// answered that much later.
func TestCloseTLSStalled(t *testing.T) {
	ca := testcert.NewCA(t)
	cfg := &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1")}}
	release := make(chan struct{})
	defer close(release)
	ep := New("c", "e", loopback.Serve(t, func(raw net.Conn) {
		c := tls.Server(raw, cfg)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if c.Handshake() == nil {
			<-release // reads nothing more
		}
		raw.Close()
	}))
	ep.SetTLS(&tls.Config{RootCAs: ca.Pool()})
	c, err := ep.Dial(context.Background(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetWriteDeadline(time.Now().Add(time.Second))
	n, err := c.Write(make([]byte, 256<<20))
	if !isTimeout(err) {
		t.Fatalf("write of 256 MiB to an endpoint that reads nothing: %d bytes, %v; want a timeout", n, err)
	}
	// The write stopped with a little room left; the socket's own bytes
	// fill it (the stream is past use), so that the alert finds none.
	raw := TCPConn(c)
	for i := 0; ; i++ {
		raw.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := raw.Write([]byte{0}); isTimeout(err) {
			break
		} else if err != nil || i == 1<<20 {
			t.Fatalf("filling the send buffer: %v after %d bytes", err, i)
		}
	}
	start := time.Now()
	ep.Close(c)
	if took := time.Since(start); took > 2500*time.Millisecond {
		t.Errorf("Close took %v", took)
	}
	if n := ep.Conns(); n != 0 {
		t.Errorf("%d connections after Close, want 0", n)
	}
}
