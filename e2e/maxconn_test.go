package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/promtext"
)

// TestNodeMaxConnectionsFlag: sluice-dp --max-connections caps the client
// connections over all the node's listeners. With a cap of 1, a TCP
// session waits while an HTTP connection is open and is served once it
// closes; the start log and /metrics name the cap. Without the flag the
// cap is the open-file limit less 100, halved.
func TestNodeMaxConnectionsFlag(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	web, echo := startBackend(t, "web"), startBackend(t, "echo")
	httpAddr, tcpAddr := freeAddr(t), freeAddr(t)
	c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    endpoints: [{ name: web, address: %s }]
  - name: raw
    endpoints: [{ name: echo, address: %s }]
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
  - { name: raw, address: %s, protocol: TCP, default_cluster: raw }
`, web.addr, echo.addr, httpAddr, tcpAddr))
	admin := freeAddr(t)
	node := start(t, "sluice-dp", "--cp", c.addr, "--node-id", "capped", "--admin", admin, "--max-connections", "1")
	waitFor(t, "the node to serve", func() bool {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	if !strings.Contains(node.out.String(), "max_connections=1 ") {
		t.Errorf("start log without max_connections=1:\n%s", node.out.String())
	}

	held, err := net.Dial("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	br := bufio.NewReader(held)
	io.WriteString(held, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	held.SetReadDeadline(time.Now().Add(testTimeout))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the first connection: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	session, err := net.Dial("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	io.WriteString(session, "GET / HTTP/1.0\r\nHost: echo\r\n\r\n")
	session.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := session.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("a TCP session with an HTTP connection open at --max-connections 1 was answered (%d bytes, %v)", n, err)
	}
	m := promtext.Scrape(t, "http://"+admin+"/metrics")
	if v := m.Value("sluice_node_max_connections"); v != 1 {
		t.Errorf("sluice_node_max_connections = %v, want 1", v)
	}
	if v := m.Value("sluice_node_full_total"); v < 1 {
		t.Errorf("sluice_node_full_total = %v, want at least 1", v)
	}
	held.Close()
	session.SetReadDeadline(time.Now().Add(testTimeout))
	answer, err := io.ReadAll(session)
	if err != nil || !strings.Contains(string(answer), "echo") {
		t.Errorf("the TCP session after the HTTP connection closed: %q, %v; want the answer of echo", answer, err)
	}
	waitFor(t, "the node's warning that it is full", func() bool {
		return strings.Contains(node.out.String(), `msg="node at --max-connections; new connections wait in the kernel's accept queue"`)
	})

	// Without the flag: from the open-file limit, which Go raises to the
	// hard one in every process.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	plain := start(t, "sluice-dp", "--cp", c.addr, "--node-id", "plain", "--admin", "")
	want := fmt.Sprintf("max_connections=%d ", (lim.Max-100)/2)
	waitFor(t, "the node's start log", func() bool { return strings.Contains(plain.out.String(), want) })
}
