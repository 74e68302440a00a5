package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/proxyproto"
)

// nginx is a real nginx on loopback. Its access log has, for each request,
// the client address a PROXY header named ($proxy_protocol_addr, empty
// without one, or for a LOCAL or UNKNOWN header), the request's path and
// the destination the header named.
type nginx struct {
	addr string
	log  string
}

// ppServer is the server block of an nginx that takes the PROXY protocol
// ("listen ... proxy_protocol"): it refuses connections without a header
// and answers every request with the client address the header named.
const ppServer = `listen %s proxy_protocol;
        location / { return 200 "$proxy_protocol_addr\n"; }`

// startNginx starts nginx from a config of its own in a temporary
// directory, with server as its one server block, in which %s is the
// address it listens on, and stops it by its pid when the test ends.
// Without nginx installed the test is skipped, unless it runs in CI (CI
// set), where .ci/run installs it.
func startNginx(t *testing.T, server string) *nginx {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("nginx is needed for this test (.ci/run installs it): %v", err)
		}
		t.Skip("nginx is not installed (apt-get install nginx); skipping the test against a real PROXY protocol server")
	}
	dir := t.TempDir()
	n := &nginx{addr: freeAddr(t), log: filepath.Join(dir, "access.log")}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // workers may not switch to nobody, who cannot write dir
	}
	conf := fmt.Sprintf(`%[1]s
master_process off;
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
events { worker_connections 64; }
http {
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    log_format pp '$proxy_protocol_addr $request_uri $proxy_protocol_server_addr:$proxy_protocol_server_port';
    access_log %[3]s pp;
    server {
        %[4]s
    }
}
`, user, dir, n.log, fmt.Sprintf(server, n.addr))
	confFile := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", confFile, "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(testTimeout):
			cmd.Process.Kill()
			<-done
		}
	})
	waitFor(t, "nginx to listen on "+n.addr, func() bool {
		select {
		case err := <-done:
			errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %v\n%s", err, errLog)
		default:
		}
		c, err := net.Dial("tcp", n.addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return n
}

// logged waits for nginx's access log to hold line: the whole line, or
// its client and path when line names only those.
func (n *nginx) logged(t *testing.T, line string) {
	t.Helper()
	var last string
	deadline := time.Now().Add(testTimeout)
	for {
		b, _ := os.ReadFile(n.log)
		last = string(b)
		for l := range strings.Lines(last) {
			if l = strings.TrimRight(l, "\n"); l == line || strings.Count(line, " ") == 1 && strings.HasPrefix(l, line+" ") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx never logged %q; its access log:\n%s", line, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// request sends "GET path" with Connection: close over c, after prefix
// (a PROXY header, or nothing), and returns the status and body.
func request(c net.Conn, prefix, path string) (string, error) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := io.WriteString(c, prefix); err != nil {
		return "", err
	}
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n\r\n", path); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, body), err
}

// dialFrom connects to addr from the loopback address from.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: testTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestProxyProtocolNginx: a real nginx behind "listen ... proxy_protocol"
// learns each client's address from the PROXY header a node sends it, v1
// and v2, through TCP and HTTP listeners: the body nginx answers and its
// access log name the address the test client connected from. Listeners
// that accept PROXY headers themselves (TCP, HTTP, HTTPS) pass on the
// address a header in front of the test's connection names (203.0.113.x,
// which no loopback client has), and the destination it names (192.0.2.x,
// which is not the listener's). The node's health checks send nginx a
// header without an address, which it takes, so the endpoints are UP.
func TestProxyProtocolNginx(t *testing.T) {
	ng := startNginx(t, ppServer)
	c := startCP(t, t.TempDir(), "")
	dp := startNode(t, c.addr, "node-1")
	tcp1, tcp2, http1, http2 := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	acceptTCP, acceptHTTP, acceptHTTPS, h2c := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	cert, key := selfSigned(t, "pp.example")
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: v1
    send_proxy: V1
    health_check: { interval: 200ms, rise: 1, http: { path: /check-v1 } }
    endpoints: [{ name: nginx, address: %[1]s }]
  - name: v2
    health_check: { interval: 200ms, rise: 1, http: { path: /check-v2 } }
    endpoints: [{ name: nginx, address: %[1]s, send_proxy: V2 }]
listeners:
  - { name: tcp1, address: %[2]s, protocol: TCP, default_cluster: v1 }
  - { name: tcp2, address: %[3]s, protocol: TCP, default_cluster: v2 }
  - { name: http1, address: %[4]s, protocol: HTTP, default_cluster: v1 }
  - { name: http2, address: %[5]s, protocol: HTTP, default_cluster: v2 }
  - { name: h2c, address: %[11]s, protocol: HTTP, default_cluster: v1, http: { h2c: true } }
  - name: accept-tcp
    address: %[6]s
    protocol: TCP
    default_cluster: v2
    proxy_protocol: { required: true, trusted_sources: [127.0.0.0/8] }
  - { name: accept-http, address: %[7]s, protocol: HTTP, default_cluster: v1, proxy_protocol: { required: true } }
  - name: accept-https
    address: %[8]s
    protocol: HTTP
    default_cluster: v2
    proxy_protocol: {}
    tls:
      certificates:
        - cert_pem: |
%[9]s
          key_pem: |
%[10]s
`, ng.addr, tcp1, tcp2, http1, http2, acceptTCP, acceptHTTP, acceptHTTPS,
		indent(cert, "            "), indent(key, "            "), h2c)))

	for _, tc := range []struct {
		listener, addr, from, path string
	}{
		{"tcp1", tcp1, "127.0.0.21", "/tcp-v1"},
		{"tcp2", tcp2, "127.0.0.22", "/tcp-v2"},
		{"http1", http1, "127.0.0.23", "/http-v1"},
		{"http2", http2, "127.0.0.24", "/http-v2"},
	} {
		got, err := request(dialFrom(t, tc.from, tc.addr), "", tc.path)
		if want := "200 " + tc.from + "\n"; err != nil || got != want {
			t.Errorf("%s: nginx answered %q, %v; want %q", tc.listener, got, err, want)
		}
		ng.logged(t, tc.from+" "+tc.path+" "+tc.addr)
	}

	// An HTTP/2 client: its streams go to nginx on a connection of its own
	// that starts with its header, as HTTP/1.1 requests do.
	for _, from := range []string{"127.0.0.28", "127.0.0.29"} {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		d := net.Dialer{Timeout: testTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		client := &http.Client{Timeout: testTimeout, Transport: &http.Transport{Protocols: &p, DialContext: d.DialContext}}
		for range 2 {
			resp, err := client.Get("http://" + h2c + "/h2c-v1")
			if err != nil {
				t.Fatalf("h2c from %s: %v", from, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(body) != from+"\n" {
				t.Errorf("h2c from %s: HTTP/%d %d %q; want HTTP/2 200 %q", from, resp.ProtoMajor, resp.StatusCode, body, from+"\n")
			}
		}
		client.CloseIdleConnections()
		ng.logged(t, from+" /h2c-v1")
	}

	// A PROXY header in front: the address it names goes on to nginx.
	for _, tc := range []struct {
		listener, addr, header, client, path, dest string
	}{
		{"accept-tcp", acceptTCP, "PROXY TCP4 203.0.113.7 192.0.2.1 4242 80\r\n", "203.0.113.7", "/accept-tcp", "192.0.2.1:80"},
		{"accept-http", acceptHTTP, string(proxyproto.AppendV2(nil, netip.MustParseAddrPort("203.0.113.8:4343"), netip.MustParseAddrPort("192.0.2.2:8080"))), "203.0.113.8", "/accept-http", "192.0.2.2:8080"},
	} {
		got, err := request(dialFrom(t, "127.0.0.25", tc.addr), tc.header, tc.path)
		if want := "200 " + tc.client + "\n"; err != nil || got != want {
			t.Errorf("%s: nginx answered %q, %v; want %q", tc.listener, got, err, want)
		}
		ng.logged(t, tc.client+" "+tc.path+" "+tc.dest)
	}
	// HTTPS: the header comes before the TLS handshake.
	raw := dialFrom(t, "127.0.0.26", acceptHTTPS)
	raw.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(raw, "PROXY TCP4 203.0.113.9 192.0.2.3 4444 443\r\n")
	got, err := request(tls.Client(raw, &tls.Config{ServerName: "pp.example", InsecureSkipVerify: true}), "", "/accept-https")
	if want := "200 203.0.113.9\n"; err != nil || got != want {
		t.Errorf("accept-https: nginx answered %q, %v; want %q", got, err, want)
	}
	ng.logged(t, "203.0.113.9 /accept-https 192.0.2.3:443")

	// A listener that requires a header closes a connection without one,
	// and nginx never sees it.
	if got, err := request(dialFrom(t, "127.0.0.27", acceptHTTP), "", "/no-header"); err == nil {
		t.Errorf("accept-http without a header: %q, want the connection closed", got)
	}

	// Health checks: nginx took their header (no address: logged "-").
	ng.logged(t, "- /check-v1")
	ng.logged(t, "- /check-v2")
	waitFor(t, "both endpoints UP", func() bool {
		up := 0
		for _, st := range dp.Node.Endpoints() {
			if st.Health == "UP" {
				up++
			}
		}
		return up == 2
	})
	if b, _ := os.ReadFile(ng.log); strings.Contains(string(b), "/no-header") {
		t.Errorf("nginx saw the request without a header")
	}
}
