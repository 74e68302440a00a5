package e2e

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/loopback"
	"github.com/sluice-lb/sluice/internal/testcert"
)

// startGreeter is a plain TCP server that speaks first: it writes "c",
// then echoes what it reads until the client half-closes.
func startGreeter(t *testing.T) string {
	t.Helper()
	return loopback.Serve(t, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(testTimeout))
		c.Write([]byte("c"))
		io.Copy(c, c)
	})
}

// TestTLSPassthroughExample runs examples/tls-passthrough.yaml: one TCP
// listener routes TLS clients by the name they ask for to endpoints that
// terminate TLS themselves (the client sees the endpoint's certificate,
// verified against the endpoint's CA); a plain-text client and one that
// sends nothing (server speaks first) reach the default cluster.
func TestTLSPassthroughExample(t *testing.T) {
	raw, err := os.ReadFile("../examples/tls-passthrough.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ca := testcert.NewCA(t)
	a := startTLSBackend(t, "a", ca.Server(t, "a.example"))
	b := startTLSBackend(t, "b", ca.Server(t, "x.b.example"))
	c := startGreeter(t)
	listen := freeAddr(t)
	doc := strings.NewReplacer(
		"127.0.0.1:8443", listen, "127.0.0.1:9441", a.addr, "127.0.0.1:9442", b.addr, "127.0.0.1:9443", c,
		"inspect_timeout: 5s", "inspect_timeout: 300ms",
	).Replace(string(raw))
	cp := startCP(t, t.TempDir(), "")
	dp := startNode(t, cp.addr, "node-1")
	waitVersion(t, dp, cp.apply(t, doc))

	for _, tt := range []struct{ sni, want string }{
		{"a.example", "a"},
		{"x.b.example", "b"},
		{"a.example", "a"},
	} {
		d := &net.Dialer{Timeout: testTimeout}
		conn, err := tls.DialWithDialer(d, "tcp", listen, &tls.Config{ServerName: tt.sni, RootCAs: ca.Pool()})
		if err != nil {
			t.Fatalf("TLS to %s through the listener: %v", tt.sni, err)
		}
		conn.SetDeadline(time.Now().Add(testTimeout))
		if names := conn.ConnectionState().PeerCertificates[0].DNSNames; len(names) != 1 || names[0] != tt.sni {
			t.Errorf("%s: the certificate names %v", tt.sni, names)
		}
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: "+tt.sni+"\r\nConnection: close\r\n\r\n")
		resp, _ := io.ReadAll(conn)
		conn.Close()
		if _, body, _ := strings.Cut(string(resp), "\r\n\r\n"); body != tt.want {
			t.Errorf("%s: answered %q, want %q", tt.sni, resp, tt.want)
		}
	}

	plain, err := net.DialTimeout("tcp", listen, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	plain.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(plain, "PING\r\n")
	plain.(*net.TCPConn).CloseWrite()
	if got, _ := io.ReadAll(plain); string(got) != "cPING\r\n" {
		t.Errorf("plain client read %q, want the default cluster's greeting and its echo", got)
	}
	plain.Close()

	// Sends nothing: after inspect_timeout it is not TLS, and the
	// default cluster greets it.
	silent, err := net.DialTimeout("tcp", listen, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetDeadline(time.Now().Add(testTimeout))
	greeting := make([]byte, 1)
	if _, err := io.ReadFull(silent, greeting); err != nil || string(greeting) != "c" {
		t.Errorf("silent client read %q, %v; want the default cluster's greeting", greeting, err)
	}
}
