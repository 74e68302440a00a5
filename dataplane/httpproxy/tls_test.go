package httpproxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/testcert"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// A client of an HTTPS listener that stops reading a large download: the
// proxy gives up on it once IdleTimeout passed without progress, and the
// connection is closed and recorded then, not 5 s later. (crypto/tls's
// Close sends its close_notify alert under a 5 s deadline of its own, and
// with the send buffer full the alert waited all of it.)
func TestStalledTLSDownloadClosesAtIdleTimeout(t *testing.T) {
	const idle = time.Second
	const size = 64 << 20
	body := pattern(size)
	ep := upstream.New("web", "b1", rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		readRequestHead(br)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\n\r\n")
		c.Write(body) // ends when the proxy closes the connection
	}))
	certPEM, keyPEM := testcert.SelfSigned(t, "example.com")
	cert, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, &Config{
		Director:    &rrDirector{eps: []*upstream.Endpoint{ep}},
		TLS:         &tls.Config{Certificates: []tls.Certificate{cert}},
		IdleTimeout: idle,
	})

	// A small receive buffer, so that the proxy's writes stall after a
	// few hundred KiB rather than after loopback's tens of MiB.
	d := net.Dialer{Timeout: defaultTestTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10)
		})
		return errors.Join(err, serr)
	}}
	raw, err := d.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(defaultTestTimeout))
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
	if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: example.com\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("got %v, %v; want 200", resp, err)
	}
	stopped := time.Now() // reads no more

	ci := p.info()
	took := time.Since(stopped)
	t.Logf("closed and recorded %v after the client stopped reading (idle timeout %v): %v, %d bytes out", took, idle, ci.Reason, ci.BytesOut)
	if ci.Reason != sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT {
		t.Errorf("close reason %v, want CLIENT_TIMEOUT", ci.Reason)
	}
	if ci.BytesOut >= size {
		t.Fatalf("%d bytes out: the client took the whole body, so nothing stalled", ci.BytesOut)
	}
	// The fault took 5 s more than the idle timeout; the bound leaves a
	// busy machine 3 s.
	if took > idle+3*time.Second {
		t.Errorf("the connection was recorded closed %v after the client stopped reading; want about the idle timeout (%v)", took, idle)
	}
	// What the socket held still reaches the client, then the end.
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil || n == 0 || int64(n) >= size {
		t.Errorf("reading on after the close: %d bytes, %v; want the bytes queued, then the connection's end", n, err)
	}
}
