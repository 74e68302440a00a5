package tcpproxy

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/testcert"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestTLSEndpoint: a session to an endpoint that speaks TLS is encrypted
// on the way to it (the backend reads plaintext only after its own
// handshake) and half-close still works: the client's EOF reaches the
// backend as a close_notify, its answer comes back whole.
func TestTLSEndpoint(t *testing.T) {
	ca := testcert.NewCA(t)
	srvCfg := &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1")}}
	backend := startBackend(t, func(c net.Conn) {
		tc := tls.Server(c, srvCfg)
		defer tc.Close()
		tc.SetDeadline(time.Now().Add(testTimeout))
		in, _ := io.ReadAll(tc) // ends at the client's close_notify
		tc.Write([]byte("got " + string(in)))
	})
	ep := upstream.New("db", "db1", backend)
	ep.SetTLS(&tls.Config{RootCAs: ca.Pool()})
	onClose, infos := recorder()
	addr := startProxy(t, NewServer(&Config{Listener: "db", Director: &fixedDirector{eps: []*upstream.Endpoint{ep}}}, onClose))

	if got := roundTrip(t, addr, "hello"); got != "got hello" {
		t.Fatalf("read %q, want %q", got, "got hello")
	}
	ci := waitInfo(t, infos)
	if ci.BytesIn != 5 || ci.BytesOut != 9 || ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED {
		t.Errorf("record = %+v; want 5 bytes in, 9 out, closed by the client", ci)
	}
}

// TestTLSEndpointBadCertificate: a certificate the node does not trust
// fails the connect, like a refused one: the session is retried on the
// next endpoint.
func TestTLSEndpointBadCertificate(t *testing.T) {
	ca, other := testcert.NewCA(t), testcert.NewCA(t)
	serve := func(name string, cert tls.Certificate) string {
		cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
		return startBackend(t, func(c net.Conn) {
			tc := tls.Server(c, cfg)
			defer tc.Close()
			tc.SetDeadline(time.Now().Add(testTimeout))
			tc.Write([]byte(name))
		})
	}
	bad := upstream.New("db", "bad", serve("bad", other.Server(t, "127.0.0.1")))
	good := upstream.New("db", "good", serve("good", ca.Server(t, "127.0.0.1")))
	for _, ep := range []*upstream.Endpoint{bad, good} {
		ep.SetTLS(&tls.Config{RootCAs: ca.Pool()})
	}
	onClose, infos := recorder()
	addr := startProxy(t, NewServer(&Config{Listener: "db", Retries: 1, Director: &fixedDirector{eps: []*upstream.Endpoint{bad, good}}}, onClose))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "good" {
		t.Fatalf("read %q, want %q", got, "good")
	}
	if ci := waitInfo(t, infos); ci.Endpoint != "good" || ci.Retries != 1 {
		t.Errorf("record = %+v; want endpoint good after 1 retry", ci)
	}
	if st := bad.Stats(); st.ConnectErrors != 1 {
		t.Errorf("bad endpoint: %d connect errors, want 1", st.ConnectErrors)
	}
}

// helloDirector records what each pick was told of the client's first
// bytes and sends every session to ep.
type helloDirector struct {
	ep   *upstream.Endpoint
	mu   sync.Mutex
	tls  []bool
	snis []string
}

func (d *helloDirector) Pick(_ net.Addr, a *Attempt) (*upstream.Endpoint, time.Duration, error) {
	d.mu.Lock()
	d.tls = append(d.tls, a.TLS())
	d.snis = append(d.snis, string(a.SNI()))
	d.mu.Unlock()
	d.ep.Acquire()
	return d.ep, time.Second, nil
}

func (d *helloDirector) last() (bool, string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tls[len(d.tls)-1], d.snis[len(d.snis)-1]
}

// TestInspect: with Inspect set, the Director learns the server name of a
// TLS client before the endpoint is chosen, and the endpoint (which
// terminates TLS: passthrough) completes the handshake with the very
// bytes the proxy read. A plain client is not TLS and its first bytes
// reach the endpoint; a client that sends nothing is picked for after the
// inspect timeout, as not TLS.
func TestInspect(t *testing.T) {
	ca := testcert.NewCA(t)
	srvCfg := &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "a.example")}}
	backend := startBackend(t, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(testTimeout))
		var first [1]byte
		if _, err := io.ReadFull(c, first[:]); err != nil {
			c.Write([]byte("silent"))
			return
		}
		if first[0] != 22 { // not a TLS handshake: echo a line
			rest := make([]byte, 64)
			n, _ := c.Read(rest)
			c.Write(append([]byte("plain "), append(first[:], rest[:n]...)...))
			return
		}
		tc := tls.Server(&prefixed{Conn: c, first: first[:]}, srvCfg)
		if tc.Handshake() != nil {
			return
		}
		tc.Write([]byte("tls " + tc.ConnectionState().ServerName))
		tc.Close()
	})
	d := &helloDirector{ep: upstream.New("web", "w1", backend)}
	// These clients send at once: the inspect timeout is long, so that a
	// ClientHello a stall delayed is not taken for a client that is not TLS.
	addr := startProxy(t, NewServer(&Config{Listener: "pass", Director: d, Inspect: testTimeout}, nil))

	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: testTimeout}, "tcp", addr, &tls.Config{ServerName: "a.example", RootCAs: ca.Pool()})
	if err != nil {
		t.Fatalf("TLS through the proxy: %v", err)
	}
	tc.SetDeadline(time.Now().Add(testTimeout))
	got, _ := io.ReadAll(tc)
	tc.Close()
	if string(got) != "tls a.example" {
		t.Errorf("TLS client read %q, want %q", got, "tls a.example")
	}
	if isTLS, sni := d.last(); !isTLS || sni != "a.example" {
		t.Errorf("pick saw TLS %v SNI %q, want TLS a.example", isTLS, sni)
	}

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	c.Write([]byte("PING\r\n"))
	got, _ = io.ReadAll(c)
	c.Close()
	if string(got) != "plain PING\r\n" {
		t.Errorf("plain client read %q, want %q", got, "plain PING\r\n")
	}
	if isTLS, sni := d.last(); isTLS || sni != "" {
		t.Errorf("plain client: pick saw TLS %v SNI %q, want neither", isTLS, sni)
	}

	// A server-speaks-first protocol: the client waits for a greeting,
	// which comes once the inspect timeout gave up on a ClientHello.
	greeter := startBackend(t, func(c net.Conn) {
		c.Write([]byte("220 ready"))
		c.Close()
	})
	d = &helloDirector{ep: upstream.New("smtp", "s1", greeter)}
	addr = startProxy(t, NewServer(&Config{Listener: "mixed", Director: d, Inspect: 50 * time.Millisecond}, nil))
	c, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	got, _ = io.ReadAll(c)
	c.Close()
	if string(got) != "220 ready" {
		t.Errorf("silent client read %q, want the greeting", got)
	}
	if isTLS, sni := d.last(); isTLS || sni != "" {
		t.Errorf("silent client: pick saw TLS %v SNI %q, want neither", isTLS, sni)
	}
}

// prefixed is a connection whose first bytes were already read.
type prefixed struct {
	net.Conn
	first []byte
}

func (p *prefixed) Read(b []byte) (int, error) {
	if len(p.first) > 0 {
		n := copy(b, p.first)
		p.first = p.first[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// denyDirector denies every connection, as a deny rule does.
type denyDirector struct{}

func (denyDirector) Pick(net.Addr, *Attempt) (*upstream.Endpoint, time.Duration, error) {
	return nil, 0, ErrDenied
}

// TestDenied: a connection a rule denies is closed and recorded as denied,
// not as finding no endpoint.
func TestDenied(t *testing.T) {
	onClose, infos := recorder()
	addr := startProxy(t, NewServer(&Config{Listener: "db", Director: denyDirector{}}, onClose))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read %d bytes, %v; want EOF", n, err)
	}
	if ci := waitInfo(t, infos); ci.Reason != sluicev1.CloseReason_CLOSE_REASON_DENIED || ci.Endpoint != "" {
		t.Errorf("record = %+v; want reason DENIED and no endpoint", ci)
	}
}
