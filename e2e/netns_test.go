//go:build linux

package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/internal/promtext"
)

// TestRemoteBodiesAreSpliced: by default (--splice auto) a node splices
// the bytes of a peer on another host and copies those of a peer on its
// own. The endpoint here serves from a network namespace the test makes,
// joined to this one by a veth pair, so that it has an address of its own
// as a peer on another host would; the client stays on loopback. A 1 MiB
// download through the HTTP listener is spliced, a 1 MiB upload from the
// client copied. With --splice never neither is, and the node makes no
// pipe; with --splice always both are. The TCP listener's download is
// checked whole every time, and for never also left unspliced; whether it
// is spliced otherwise depends on how its bursts meet the node's reads.
func TestRemoteBodiesAreSpliced(t *testing.T) {
	ns := newNetns(t)
	for _, tc := range []struct {
		name        string
		args        []string
		get, upload bool // the HTTP download is spliced; the upload is
	}{
		{name: "auto", get: true},
		{name: "never", args: []string{"--splice", "never"}},
		{name: "always", args: []string{"--splice", "always"}, get: true, upload: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bodies := startBigBodiesOn(t, ns.listen(t))
			bodies.node(t, nil, "remote", tc.args...)
			bodies.waitListening(t)
			splices := func() float64 {
				return promtext.Scrape(t, "http://"+bodies.admin+"/metrics").Value("sluice_node_splices_total")
			}
			// step checks what one step added to sluice_node_splices_total.
			step := func(what string, spliced bool, do func()) {
				before := splices()
				do()
				switch got := splices() - before; {
				case spliced && got < 1:
					t.Errorf("%s: sluice_node_splices_total rose by %v, want 1 or more: spliced", what, got)
				case !spliced && got != 0:
					t.Errorf("%s: sluice_node_splices_total rose by %v, want 0: copied", what, got)
				}
			}
			step("1 MiB download from the endpoint in another namespace, through the HTTP listener", tc.get, func() { bodies.get(t, bodies.http) })
			step("1 MiB upload from the loopback client, through the HTTP listener", tc.upload, func() { bodies.post(t) })
			if !tc.get && !tc.upload { // never
				step("1 MiB download from the endpoint in another namespace, through the TCP listener", false, func() { bodies.get(t, bodies.tcp) })
				if got := promtext.Scrape(t, "http://"+bodies.admin+"/metrics").Value("sluice_node_pipes"); got != 0 {
					t.Errorf("sluice_node_pipes = %v, want 0: no pipe was made", got)
				}
			} else {
				bodies.get(t, bodies.tcp)
			}
		})
	}
}

// netnsMade counts the namespaces newNetns made, for their names: the
// kernel may still be removing the last one when the next is made.
var netnsMade atomic.Int64

// netns is a network namespace the test made, joined to the test's own
// by a veth pair: to a process outside it, a peer inside it is on another
// host, at an address of its own.
type netns struct {
	name string
	peer string // the address of the namespace's end of the pair
}

// newNetns makes the namespace, and removes it (with the pair) when the
// test ends. It needs root and iproute2's ip: without them it skips the
// test, or fails it where CI is set; likewise where the kernel refuses
// the namespace (root in a container without CAP_SYS_ADMIN). Its addresses
// are a /30 of 198.18.0.0/15, the range set aside for benchmarking
// networks (RFC 2544), that no address of the host is in.
func newNetns(t *testing.T) *netns {
	t.Helper()
	skip := func(why string) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatal(why + " (with CI set this fails, not skips)")
		}
		t.Skip(why)
	}
	if os.Geteuid() != 0 {
		skip("makes a network namespace, which needs root")
	} else if _, err := exec.LookPath("ip"); err != nil {
		skip("makes a network namespace with iproute2's ip, which is not installed")
	}
	removeStaleNetns(t)
	pid, seq := os.Getpid(), netnsMade.Add(1)
	n := &netns{name: fmt.Sprintf("sluice-e2e-%d-%d", pid, seq)}
	host, inner := vethName(pid, seq, 'h'), vethName(pid, seq, 'n')
	subnet := freeSubnet(t, pid)
	hostAddr, peerAddr := addrIn(t, subnet, 1), addrIn(t, subnet, 2)
	n.peer = peerAddr
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		skip(fmt.Sprintf("cannot make a network namespace here: ip netns add: %v: %s", err, bytes.TrimSpace(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.name, err, out)
			return
		}
		if err := waitLinkGone(host); err != nil {
			t.Error(err)
		}
	})
	ip("link", "add", host, "type", "veth", "peer", "name", inner, "netns", n.name)
	ip("addr", "add", hostAddr+"/30", "dev", host)
	ip("link", "set", host, "up")
	ip("-n", n.name, "addr", "add", peerAddr+"/30", "dev", inner)
	ip("-n", n.name, "link", "set", inner, "up")
	return n
}

// vethName names the end (h: the host's, n: the namespace's) of the pair
// of the namespace of pid and seq: 15 bytes at most, as Linux wants, up
// to 7-digit pids and a seq below 1000.
func vethName(pid int, seq int64, end byte) string {
	return fmt.Sprintf("slb%d-%d%c", pid, seq, end)
}

// waitLinkGone waits for the host's end of a removed namespace's pair to
// go. Removing a namespace removes the pair (its inner end goes with it,
// and a veth does not outlive its peer), but the kernel does that a
// little later; the pair's addresses are free only once it has.
func waitLinkGone(host string) error {
	deadline := time.Now().Add(testTimeout)
	for exec.Command("ip", "link", "show", host).Run() == nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is still there %v after its namespace was removed", host, testTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// removeStaleNetns removes the namespaces that runs of this test left
// when they were killed before their cleanup: those named for a process
// that is gone, or for this one (whose own namespaces each test removes
// when it ends).
func removeStaleNetns(t *testing.T) {
	t.Helper()
	names, _ := filepath.Glob("/run/netns/sluice-e2e-*")
	for _, p := range names {
		name := filepath.Base(p)
		var pid int
		var seq int64
		if _, err := fmt.Sscanf(name, "sluice-e2e-%d-%d", &pid, &seq); err != nil {
			continue
		}
		if err := unix.Kill(pid, 0); pid != os.Getpid() && (err == nil || err == unix.EPERM) {
			continue // its process still runs
		}
		if err := exec.Command("ip", "netns", "del", name).Run(); err == nil {
			if err := waitLinkGone(vethName(pid, seq, 'h')); err != nil {
				t.Log(err)
			}
		}
	}
}

// freeSubnet is the network address of a /30 of 198.18.0.0/16 in which
// the host has no address, starting from one that pid picks, so that
// concurrent test processes start apart.
func freeSubnet(t *testing.T, pid int) string {
	t.Helper()
	for k := range 256 {
		i := (pid + k) & 0x3fff
		subnet := fmt.Sprintf("198.18.%d.%d", i>>6, i&0x3f<<2)
		out, err := exec.Command("ip", "-4", "-o", "addr", "show", "to", subnet+"/30").Output()
		if err != nil {
			t.Fatalf("ip -4 -o addr show to %s/30: %v", subnet, err)
		}
		if len(bytes.TrimSpace(out)) == 0 {
			return subnet
		}
	}
	t.Fatal("no free /30 in 256 of 198.18.0.0/16")
	return ""
}

// addrIn is the IPv4 address i past the network address subnet.
func addrIn(t *testing.T, subnet string, i byte) string {
	t.Helper()
	a := net.ParseIP(subnet).To4()
	if a == nil {
		t.Fatalf("%q is not an IPv4 address", subnet)
	}
	a[3] += i
	return a.String()
}

// listen is a TCP listener on a free port of the namespace's address. A
// socket belongs to the namespace it was made in, whichever thread uses
// it later; so it is made on a thread that joins the namespace for that
// and then goes back. A thread that could not go back is not given back
// to the runtime either: it ends with its goroutine.
func (n *netns) listen(t *testing.T) net.Listener {
	t.Helper()
	type result struct {
		ln  net.Listener
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		ln, err := n.listenLocked()
		done <- result{ln, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	// An open socket keeps its namespace, and the pair, alive; whoever
	// serves on it may not get to close it if the test fails first.
	t.Cleanup(func() { r.ln.Close() })
	return r.ln
}

// listenLocked is listen's work on the goroutine's own thread, which it
// unlocks once the thread is back in its namespace.
func (n *netns) listenLocked() (net.Listener, error) {
	home, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, err
	}
	defer home.Close()
	there, err := os.Open("/run/netns/" + n.name)
	if err != nil {
		return nil, err
	}
	defer there.Close()
	if err := unix.Setns(int(there.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("setns %s: %w", n.name, err)
	}
	ln, lerr := net.Listen("tcp", net.JoinHostPort(n.peer, "0"))
	if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
		if ln != nil {
			ln.Close()
		}
		return nil, fmt.Errorf("setns back from %s: %w", n.name, err)
	}
	runtime.UnlockOSThread()
	return ln, lerr
}
