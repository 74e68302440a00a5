package node

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestH2CByDefault: a plain HTTP listener takes HTTP/2 with prior
// knowledge unless its http.h2c is false, as HAProxy's bind and Envoy's
// codec_type AUTO do, and HTTP/1.1 on the same port either way. With
// h2c: false the preface is answered as the HTTP/1.1 request it is not:
// 505.
func TestH2CByDefault(t *testing.T) {
	n := newNode(t)
	be := backend(t, "web1")
	unset, off, on := freeAddr(t), freeAddr(t), freeAddr(t)
	if err := n.Apply("1", parse(t, `
clusters: [{ name: web, endpoints: [{ name: e, address: "%s" }] }]
listeners:
  - { name: unset, address: "%s", protocol: HTTP, default_cluster: web }
  - { name: off, address: "%s", protocol: HTTP, default_cluster: web, http: { h2c: false } }
  - { name: on, address: "%s", protocol: HTTP, default_cluster: web, http: { h2c: true } }
`, be, unset, off, on)); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	h1 := &http.Client{Timeout: testTimeout, Transport: tr}
	h2 := h2cClient(t, nil)
	for _, tc := range []struct {
		client *http.Client
		addr   string
		proto  int
	}{{h2, unset, 2}, {h2, on, 2}, {h1, unset, 1}, {h1, off, 1}, {h1, on, 1}} {
		resp, err := tc.client.Get("http://" + tc.addr + "/")
		if err != nil {
			t.Errorf("HTTP/%d to %s: %v", tc.proto, tc.addr, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != tc.proto || resp.StatusCode != 200 || string(body) != "web1" {
			t.Errorf("HTTP/%d to %s: HTTP/%d %d %q, want HTTP/%[1]d 200 from web1", tc.proto, tc.addr, resp.ProtoMajor, resp.StatusCode, body)
		}
	}

	c, err := net.DialTimeout("tcp", off, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 505 ") {
		t.Errorf("the HTTP/2 preface to h2c: false: %q, %v; want HTTP/1.1 505", line, err)
	}
}
