package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane"
	"github.com/sluice-lb/sluice/internal/loopback"
)

// TestReceiveBufferBoundsStalledDownloads: a client that stops reading a
// large download leaves the rest queued in the node's kernel, on its
// connection to the endpoint. Unset, the kernel grows that connection's
// receive buffer by how much the node takes from it at once: to megabytes
// when the node splices the download up to 1 MiB a call, as it does from
// endpoints on other hosts, which the first run stands for (--splice
// always), to a client socket that does not pace its sends (CUBIC); to
// some hundred kilobytes when it copies (64 KiB a call), as it does from
// endpoints on its own host, or splices 64 KiB a call, as it does to a
// client socket that paces (BBR). Either way a cluster's
// receive_buffer_bytes holds it at what the operator set (the kernel
// reserves twice the figure), and the download then still arrives whole
// once the client reads again.
func TestReceiveBufferBoundsStalledDownloads(t *testing.T) {
	for _, mode := range []string{"always", "auto"} {
		t.Run(mode, func(t *testing.T) {
			if err := dataplane.SetSplice(mode); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { dataplane.SetSplice("auto") })
			receiveBufferBoundsStalledDownloads(t, mode == "always")
		})
	}
}

func receiveBufferBoundsStalledDownloads(t *testing.T, spliced bool) {
	const size = 64 << 20  // what each endpoint sends, then it closes
	const fixed = 64 << 10 // receive_buffer_bytes of one cluster
	auto, bounded := startFlood(t, size), startFlood(t, size)
	autoAddr, boundedAddr := freeAddr(t), freeAddr(t)
	c := startCP(t, t.TempDir(), "")
	c.apply(t, fmt.Sprintf(`
clusters:
  - name: auto
    endpoints: [{ name: a, address: %s }]
  - name: bounded
    receive_buffer_bytes: %d
    endpoints: [{ name: b, address: %s }]
listeners:
  - { name: auto, address: %s, protocol: TCP, default_cluster: auto }
  - { name: bounded, address: %s, protocol: TCP, default_cluster: bounded }
`, auto.addr, fixed, bounded.addr, autoAddr, boundedAddr))
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, 1)

	// Both clients connect and read nothing; each endpoint writes until
	// the bytes back up to it.
	autoClient, boundedClient := dialQuiet(t, autoAddr), dialQuiet(t, boundedAddr)
	auto.waitStalled(t)
	bounded.waitStalled(t)
	autoQ, boundedQ := recvQueue(t, auto.addr), recvQueue(t, bounded.addr)
	t.Logf("queued on the node's connection to the endpoint: %d bytes unset, %d bytes at receive_buffer_bytes %d", autoQ, boundedQ, fixed)
	if boundedQ > 2*fixed {
		t.Errorf("with receive_buffer_bytes %d the node's kernel holds %d bytes of the stalled download from the endpoint, want at most %d", fixed, boundedQ, 2*fixed)
	}
	if w := auto.written.Load(); w >= size {
		t.Fatalf("the endpoint wrote all %d bytes while the client read nothing: the download did not stall", w)
	}
	// Without the setting, spliced a pipe at a time, the same download
	// must hold far more, or the client above did not stall anything.
	// (The node's socket to the client takes the host's default
	// congestion control.)
	if spliced && !hostPaces(t) && autoQ < 8*fixed {
		t.Errorf("without receive_buffer_bytes the node's kernel holds only %d bytes of a stalled download, want at least %d: did the download stall?", autoQ, 8*fixed)
	}

	for _, cl := range []struct {
		name string
		conn net.Conn
	}{{"unset", autoClient}, {"bounded", boundedClient}} {
		cl.conn.SetReadDeadline(time.Now().Add(testTimeout))
		n, ok, err := readFlood(cl.conn)
		if err != nil || n != size || !ok {
			t.Errorf("%s: the client read %d bytes (pattern intact: %t, error %v) once it read again, want all %d", cl.name, n, ok, err, size)
		}
	}
}

// flood is a TCP endpoint that sends size bytes of a known pattern to
// whoever connects, then closes.
type flood struct {
	addr    string
	written atomic.Int64
}

func startFlood(t *testing.T, size int) *flood {
	t.Helper()
	f := &flood{}
	f.addr = loopback.Serve(t, func(conn net.Conn) {
		defer conn.Close()
		conn.SetWriteDeadline(time.Now().Add(2 * testTimeout))
		chunk := floodPattern()
		for sent := 0; sent < size; sent += len(chunk) {
			n, err := conn.Write(chunk[:min(len(chunk), size-sent)])
			f.written.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	return f
}

// floodPattern is the 64 KiB a flood sends over and over. Its bytes count
// modulo 251, a prime that does not divide 64 KiB, so a piece lost or
// repeated shifts the stream off the pattern by the next 64 KiB boundary;
// one of whole 64 KiB pieces shows in the total.
func floodPattern() []byte {
	p := make([]byte, 64<<10)
	for i := range p {
		p[i] = byte(i % 251)
	}
	return p
}

// waitStalled waits until the endpoint has written something and then
// nothing more for half a second: its bytes have backed up to it.
func (f *flood) waitStalled(t *testing.T) {
	t.Helper()
	last, since := int64(-1), time.Now()
	waitFor(t, "the download to stall", func() bool {
		n := f.written.Load()
		if n != last {
			last, since = n, time.Now()
			return false
		}
		return n > 0 && time.Since(since) > 500*time.Millisecond
	})
}

// readFlood reads a flood's stream to its end and checks it against the
// pattern.
func readFlood(r io.Reader) (n int, intact bool, err error) {
	p := floodPattern()
	buf := make([]byte, 256<<10)
	intact = true
	for {
		m, err := r.Read(buf)
		for i := range m {
			if buf[i] != p[(n+i)%len(p)] {
				intact = false
				break
			}
		}
		n += m
		if err == io.EOF {
			return n, intact, nil
		}
		if err != nil {
			return n, intact, err
		}
	}
}

// dialQuiet connects to addr and keeps the connection open, unread, until
// the test ends.
func dialQuiet(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// recvQueue is the receive queue, in bytes, of the one connection on this
// host whose peer is remote: the node's connection to that endpoint, as
// /proc/net/tcp (what ss reads) shows it.
func recvQueue(t *testing.T, remote string) int {
	t.Helper()
	want := procTCPAddr(t, remote)
	found, queue := 0, 0
	for _, f := range procTCP(t) {
		// 01: ESTABLISHED, 08: CLOSE_WAIT (the endpoint sent all and
		// closed, and the node has yet to read it all).
		if len(f) < 5 || f[2] != want || f[3] != "01" && f[3] != "08" {
			continue
		}
		_, rx, _ := strings.Cut(f[4], ":")
		q, err := strconv.ParseUint(rx, 16, 32)
		if err != nil {
			t.Fatalf("/proc/net/tcp: queue %q: %v", f[4], err)
		}
		found++
		queue = int(q)
	}
	if found != 1 {
		t.Fatalf("/proc/net/tcp has %d open connections to %s, want 1 (the node's)", found, remote)
	}
	return queue
}

// hostPaces reports whether the host's default congestion control, which
// the node's sockets take, paces what they send (BBR): a splice to such a
// socket takes 64 KiB at a time, not the pipe (tcpseg.Paced).
func hostPaces(t *testing.T) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
	if err != nil {
		t.Fatal(err)
	}
	return strings.HasPrefix(string(b), "bbr")
}
