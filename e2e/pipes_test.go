package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/internal/promtext"
)

// nobody is the unprivileged user TestBodiesPastThePipeLimit runs the
// node and the pipe holder as: without CAP_SYS_RESOURCE or CAP_SYS_ADMIN,
// the kernel counts their pipes against the user's
// /proc/sys/fs/pipe-user-pages-soft.
var nobody = &syscall.Credential{Uid: 65534, Gid: 65534}

// holdPipesEnv makes the test binary a pipe holder (TestPipeHolder).
const holdPipesEnv = "SLUICE_E2E_HOLD_PIPES"

// TestBodiesPastThePipeLimit: a node run as an unprivileged user whose
// pipe limit is spent gets 8 KiB pipes from the kernel, through which
// splicing is slower than copying. It finds that out (its log says which
// limit to raise, once) and still moves 1 MiB bodies whole through an
// HTTP listener, both ways, and a TCP listener. The node runs with
// --splice always: by default it copies the bytes of peers on this host,
// as every peer here is, and would make no pipe. Which way the bytes went
// (copied, not spliced) the test does not see; BENCHMARKS.md measures it.
func TestBodiesPastThePipeLimit(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("runs the node as another user (nobody), which needs root; CI runs as root")
		}
		t.Skip("runs the node as another user (nobody), which needs root")
	}
	bin := binaries(t)
	if err := os.Chmod(bin, 0o755); err != nil { // MkdirTemp made it 0700
		t.Fatal(err)
	}
	holdPipes(t, bin)

	bodies := startBigBodies(t)
	dp := bodies.node(t, nobody, "pipes", "--splice", "always")
	bodies.move(t)
	waitFor(t, "the node to log the pipe limit", func() bool {
		return strings.Contains(dp.out.String(), "/proc/sys/fs/pipe-user-pages-soft")
	})
	if n := strings.Count(dp.out.String(), "pipe-user-pages-soft"); n != 1 {
		t.Errorf("the node logged the pipe limit %d times, want once:\n%s", n, dp.out.String())
	}
	// A fleet sees it in the node's metrics: every pipe it tried to make
	// came short, and it holds none.
	m := promtext.Scrape(t, "http://"+bodies.admin+"/metrics")
	if got := m.Value("sluice_node_pipe_shortages_total"); got < 1 {
		t.Errorf("sluice_node_pipe_shortages_total = %v past the pipe limit, want 1 or more", got)
	}
	if got := m.Value("sluice_node_pipes"); got != 0 {
		t.Errorf("sluice_node_pipes = %v, want 0: every pipe the node made came short and was closed", got)
	}
}

// TestLocalBodiesAreCopied: by default (--splice auto) a node copies the
// bytes of peers on this host, where that costs less than splicing them:
// 1 MiB bodies both ways through an HTTP listener and a TCP listener, all
// on loopback, arrive whole, and the node spliced none of them; nor with
// --splice never. With --splice always it splices them, and says so.
func TestLocalBodiesAreCopied(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		spliced bool
	}{
		{"auto", nil, false},
		{"never", []string{"--splice", "never"}, false},
		{"always", []string{"--splice", "always"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bodies := startBigBodies(t)
			bodies.node(t, nil, "local", tc.args...)
			bodies.move(t)
			m := promtext.Scrape(t, "http://"+bodies.admin+"/metrics")
			switch got := m.Value("sluice_node_splices_total"); {
			case tc.spliced && got < 2:
				// The HTTP listener's GET and POST bodies; the TCP
				// listener's download too when a burst outpaces the
				// node's reads, which this test does not count on.
				t.Errorf("sluice_node_splices_total = %v after 1 MiB bodies through the HTTP listener both ways, want 2 or more", got)
			case !tc.spliced && got != 0:
				t.Errorf("sluice_node_splices_total = %v after 1 MiB bodies between loopback peers, want 0: copied, not spliced", got)
			}
			if got := m.Value("sluice_node_pipes"); !tc.spliced && got != 0 {
				t.Errorf("sluice_node_pipes = %v, want 0: no pipe was made", got)
			}
		})
	}
}

// bigBodies is an endpoint of 1 MiB bodies behind a control plane's HTTP
// and TCP listeners, for a node to serve with its admin address at admin.
type bigBodies struct {
	body                 []byte
	cp, admin, http, tcp string
}

// startBigBodies starts the endpoint on loopback and the control plane,
// and applies the listeners.
func startBigBodies(t *testing.T) *bigBodies {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startBigBodiesOn(t, ln)
}

// startBigBodiesOn is startBigBodies with the endpoint serving on ln.
func startBigBodiesOn(t *testing.T, ln net.Listener) *bigBodies {
	t.Helper()
	b := &bigBodies{body: make([]byte, 1<<20), admin: freeAddr(t), http: freeAddr(t), tcp: freeAddr(t)}
	rand.Read(b.body)
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			got, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "received %d bytes, same as sent: %t", len(got), bytes.Equal(got, b.body))
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b.body)))
		w.Write(b.body)
	}))
	backend.Listener.Close()
	backend.Listener = ln
	backend.Start()
	t.Cleanup(backend.Close)
	c := startCP(t, t.TempDir(), "")
	c.apply(t, fmt.Sprintf(`
clusters:
  - name: big
    endpoints: [{ name: b1, address: %s }]
listeners:
  - { name: http, address: %s, protocol: HTTP, default_cluster: big }
  - { name: tcp, address: %s, protocol: TCP, default_cluster: big }
`, ln.Addr(), b.http, b.tcp))
	b.cp = c.addr
	return b
}

// node starts sluice-dp as id (as the user cred, or this process's with
// nil) on the control plane, with its admin address at b.admin and args.
func (b *bigBodies) node(t *testing.T, cred *syscall.Credential, id string, args ...string) *proc {
	t.Helper()
	return startAs(t, cred, "sluice-dp", append([]string{"--cp", b.cp, "--node-id", id, "--admin", b.admin, "--drain-grace", "1s"}, args...)...)
}

// move waits for the node to listen, then GETs the body through both
// listeners and POSTs it through the HTTP one, checking that each arrived
// whole.
func (b *bigBodies) move(t *testing.T) {
	t.Helper()
	b.waitListening(t)
	b.get(t, b.http)
	b.get(t, b.tcp)
	b.post(t)
}

// waitListening waits for the node to listen.
func (b *bigBodies) waitListening(t *testing.T) {
	t.Helper()
	waitFor(t, "the node to listen", func() bool {
		conn, err := net.Dial("tcp", b.http)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
}

// get GETs the body through the listener at addr and checks that it
// arrived whole.
func (b *bigBodies) get(t *testing.T, addr string) {
	t.Helper()
	got, err := tcpGet(addr)
	if err != nil {
		t.Fatalf("GET through %s: %v", addr, err)
	}
	if got != string(b.body) {
		t.Errorf("GET through %s: %d bytes, not the endpoint's 1 MiB body", addr, len(got))
	}
}

// post POSTs the body through the HTTP listener and checks that the
// endpoint received it whole.
func (b *bigBodies) post(t *testing.T) {
	t.Helper()
	client := &http.Client{Timeout: testTimeout}
	resp, err := client.Post("http://"+b.http+"/", "application/octet-stream", bytes.NewReader(b.body))
	if err != nil {
		t.Fatalf("POST through the HTTP listener: %v", err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("received %d bytes, same as sent: true", len(b.body)); string(answer) != want {
		t.Errorf("POST of 1 MiB through the HTTP listener: the endpoint answered %q, want %q", answer, want)
	}
}

// holdPipes runs a copy of the test binary as nobody (TestPipeHolder),
// which takes 1 MiB pipes until the kernel gives no more, and holds them
// until the test ends. It skips the test where the user has no limit.
func holdPipes(t *testing.T, dir string) {
	t.Helper()
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "pipe-holder.test")
	if err := os.WriteFile(exe, self, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(exe) })
	cmd := exec.Command(exe, "-test.run=^TestPipeHolder$")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), holdPipesEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		stdin.Close() // the holder's cue to end
		select {
		case <-exited:
		case <-time.After(testTimeout):
			cmd.Process.Kill()
			<-exited
		}
	})
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
		io.Copy(io.Discard, stdout)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(testTimeout):
		t.Fatal("the pipe holder said nothing")
	}
	if strings.HasPrefix(line, "unlimited") {
		t.Skip("the kernel sets nobody no pipe limit")
	}
	var held, next int
	fmt.Sscanf(line, "held %d pipes; next pipe %d bytes", &held, &next)
	switch {
	case next == 0:
		t.Fatalf("pipe holder: %q", line)
	case next >= 64<<10:
		t.Skipf("a pipe cannot grow to 1 MiB here for a reason other than the pipe limit (/proc/sys/fs/pipe-max-size?): %q", line)
	}
}

// TestPipeHolder is the pipe holder of holdPipes, when run by it: it
// takes 1 MiB pipes until F_SETPIPE_SZ fails, says how many it holds and
// how large the kernel made the next, and holds them until its stdin
// closes.
func TestPipeHolder(t *testing.T) {
	if os.Getenv(holdPipesEnv) == "" {
		t.Skip("the pipe holder of TestBodiesPastThePipeLimit")
	}
	// 512 pipes of 1 MiB are eight times the default limit.
	for held := 0; held < 512; held++ {
		var fds [2]int
		if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
			fmt.Println("pipe2:", err)
			return
		}
		if _, err := unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, 1<<20); err != nil {
			next, _ := unix.FcntlInt(uintptr(fds[1]), unix.F_GETPIPE_SZ, 0)
			fmt.Printf("held %d pipes; next pipe %d bytes\n", held, next)
			io.Copy(io.Discard, os.Stdin)
			return
		}
	}
	fmt.Println("unlimited")
	io.Copy(io.Discard, os.Stdin)
}
