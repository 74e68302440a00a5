package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/loopback"
)

// tcpTimer is what /proc/net/tcp says of the timer of the IPv4 socket
// from local to remote, as `ss -o` shows it: which timer runs (0 none, 1
// retransmit, 2 keep-alive, 4 zero-window probe) and when it fires, in
// hundredths of a second from now.
func tcpTimer(t *testing.T, local, remote string) (kind int, hundredths int64) {
	t.Helper()
	l, r := procTCPAddr(t, local), procTCPAddr(t, remote)
	for _, f := range procTCP(t) {
		if len(f) < 6 || f[1] != l || f[2] != r {
			continue
		}
		tr, when, _ := strings.Cut(f[5], ":")
		k, err1 := strconv.ParseInt(tr, 16, 32)
		w, err2 := strconv.ParseInt(when, 16, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("/proc/net/tcp: cannot read the timer %q", f[5])
		}
		return int(k), w
	}
	t.Fatalf("/proc/net/tcp has no socket from %s to %s", local, remote)
	return 0, 0
}

// TestTCPKeepalive: the node's sockets get TCP keep-alive probes only
// where the snapshot asks: the client's socket by the listener's
// tcp_keepalive, the endpoint's by the cluster's, each with its own idle
// time, as the kernel's timers show; elsewhere they get none, where Go
// would probe every 15s.
func TestTCPKeepalive(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	var mu sync.Mutex
	var accepted []net.Conn // the backend's side of the node's connections, in order
	echo := loopback.Serve(t, func(conn net.Conn) {
		mu.Lock()
		accepted = append(accepted, conn)
		mu.Unlock()
		defer conn.Close()
		io.Copy(conn, conn)
	})
	probed, plain := freeAddr(t), freeAddr(t)
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - { name: probed, endpoints: [ { name: e, address: %[1]s } ], tcp_keepalive: { idle: 9s } }
  - { name: plain, endpoints: [ { name: e, address: %[1]s } ] }
listeners:
  - { name: probed, address: %[2]s, protocol: TCP, default_cluster: probed, tcp_keepalive: { idle: 7s, interval: 2s, probes: 3 } }
  - { name: plain, address: %[3]s, protocol: TCP, default_cluster: plain }
`, echo, probed, plain)))

	for i, tt := range []struct {
		listen         string
		client, server int64 // the keep-alive idle time, in seconds; 0: none
	}{
		{probed, 7, 9},
		{plain, 0, 0},
	} {
		conn, err := net.DialTimeout("tcp", tt.listen, testTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// Once an exchange went through, the node has set up both of
		// its sockets.
		conn.SetDeadline(time.Now().Add(testTimeout))
		io.WriteString(conn, "ping\n")
		if got, err := bufio.NewReader(conn).ReadString('\n'); got != "ping\n" {
			t.Fatalf("%s: read %q, %v", tt.listen, got, err)
		}
		mu.Lock()
		if len(accepted) != i+1 {
			t.Fatalf("the backend accepted %d connections, want %d", len(accepted), i+1)
		}
		b := accepted[i]
		mu.Unlock()
		for _, s := range []struct {
			side          string
			local, remote string
			idle          int64
		}{
			{"the client's", tt.listen, conn.LocalAddr().String(), tt.client},
			{"the endpoint's", b.RemoteAddr().String(), b.LocalAddr().String(), tt.server},
		} {
			kind, when := tcpTimer(t, s.local, s.remote)
			switch {
			case s.idle == 0 && kind != 0:
				t.Errorf("%s: the node's socket on %s side has timer %d (%d/100 s), want none", tt.listen, s.side, kind, when)
			case s.idle > 0 && (kind != 2 || when > 100*s.idle || when < 100*(s.idle-2)):
				t.Errorf("%s: the node's socket on %s side has timer %d firing in %d/100 s, want keep-alive (2) in about %ds", tt.listen, s.side, kind, when, s.idle)
			}
		}
	}
}
