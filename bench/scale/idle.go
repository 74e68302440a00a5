package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/dataplane/node"
	"github.com/sluice-lb/sluice/internal/scale"
	"github.com/sluice-lb/sluice/snapshot"
	"golang.org/x/sys/unix"
)

// fdsPerSession is what one TCP session costs the node in descriptors:
// its two sockets and the two pipes of its splice(2) copies.
const fdsPerSession = 6

// childEnv, set, makes the program the node of the idle part (serveChild).
const childEnv = "SLUICE_SCALE_NODE"

// Source addresses of the idle part's clients: 127.0.0.2 and on, each
// with its own ephemeral port range (net.ipv4.ip_local_port_range), so
// that 120k connections to one listener do not run out of ports.
const sources = 16

// idleBackends: the TCP sessions' cluster has this many endpoints on as
// many backend ports, so that the node's own connections to them, all
// from 127.0.0.1, have room too (a local port can be reused towards a
// different destination). connect(2) tries the even half of the port range
// first, and once a destination has used that half up, each connect to it
// scans the whole half before it finds a port: with 4 backends, 100k
// sessions took 20 minutes to open under emulation instead of 5.
const idleBackends = 16

// measureIdle runs the idle part: the HTTP connections and the TCP
// sessions each against a node of their own, so that each figure is the
// node's growth for that kind alone. ok is false when the node dropped
// held connections or failed a request.
func measureIdle(nHTTP, nTCP int) (rows []row, ok bool) {
	if nHTTP == 0 && nTCP == 0 {
		return nil, true
	}
	rows = append(rows, checkSysctls(nHTTP+nTCP)...)
	// The node holds one descriptor per idle HTTP connection and
	// fdsPerSession per TCP session, this process two per session (client,
	// backend): what the hard RLIMIT_NOFILE allows is what can be
	// measured. Raising it needs CAP_SYS_RESOURCE.
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	if err := raiseNofile(uint64(max(nHTTP, fdsPerSession*nTCP) + 1000)); err != nil {
		budget := int(lim.Max) - 1000
		capped := func(n, per int) int { return max(0, min(n, budget/per)) }
		progress("idle: cannot raise RLIMIT_NOFILE above its hard limit %d (%v): measuring %d HTTP connections and %d TCP sessions instead of %d and %d",
			lim.Max, err, capped(nHTTP, 1), capped(nTCP, fdsPerSession), nHTTP, nTCP)
		rows = append(rows, row{"RLIMIT_NOFILE hard limit", fmt.Sprintf("%d, and no CAP_SYS_RESOURCE to raise it", lim.Max), "enough for the counts asked"})
		nHTTP, nTCP = capped(nHTTP, 1), capped(nTCP, fdsPerSession)
		raiseNofile(lim.Max)
	}
	ok = true
	var lat []time.Duration
	phase := func(kind string, n int) (held, dead int, perConn, fdsPer float64, rss0, rss1 int64) {
		var backends []string
		for range idleBackends {
			b, err := scale.StartBackend()
			if err != nil {
				progress("idle: backend: %v", err)
				ok = false
				return
			}
			defer b.Close()
			backends = append(backends, b.Addr)
		}
		httpAddr, tcpAddr := freeAddr(), freeAddr()
		addr := httpAddr
		if kind == "TCP" {
			addr = tcpAddr
		}
		child, err := startChild(httpAddr, tcpAddr, backends, int(min(lim.Max, uint64(n*fdsPerSession+1000))))
		if err != nil {
			progress("idle: node: %v", err)
			ok = false
			return
		}
		defer child.stop()
		// Warm up both listeners, then the baseline.
		for range 50 {
			for _, a := range []string{httpAddr, tcpAddr} {
				if _, err := timedRequest(a); err != nil {
					progress("idle: warm-up request to %s: %v", a, err)
					ok = false
					return
				}
			}
		}
		time.Sleep(2 * time.Second)
		rss0, fd0 := child.rss(), child.fds()
		progress("idle: %s: node pid %d, RSS %d MiB (%s); opening %d connections, one exchange each", kind, child.cmd.Process.Pid, rss0>>20, child.mem(), n)
		start := time.Now()
		fds, err := openIdle(addr, n, 0)
		defer closeAll(fds)
		if err != nil {
			progress("idle: %s: %d opened, then: %v", kind, len(fds), err)
			ok = false
		}
		took := time.Since(start)
		time.Sleep(3 * time.Second) // let the node settle
		rss1 = child.rss()
		perConn = float64(rss1-rss0) / float64(max(len(fds), 1))
		fdsPer = float64(child.fds()-fd0) / float64(max(len(fds), 1))
		progress("idle: %s: %d held (opened in %v); node RSS %d MiB, +%.2f KiB per connection; %s",
			kind, len(fds), took.Round(time.Millisecond), rss1>>20, perConn/1024, child.mem())
		// While it holds them: new requests, on new connections, and a
		// second request on a sample of the held ones (still open,
		// still served).
		if kind == "HTTP" {
			for range 200 {
				d, err := timedRequest(httpAddr)
				if err != nil {
					progress("idle: new request while holding: %v", err)
					ok = false
					break
				}
				lat = append(lat, d)
			}
		}
		if dead = reuse(fds, 1000); dead > 0 {
			progress("idle: %s: %d held connections failed a second request", kind, dead)
			ok = false
		}
		return len(fds), dead, perConn, fdsPer, rss0, rss1
	}

	if nHTTP > 0 {
		held, dead, per, fdsPer, rss0, rss1 := phase("HTTP", nHTTP)
		slices.Sort(lat)
		latency := "-"
		if len(lat) > 0 {
			latency = fmt.Sprintf("p50 %v  p99 %v  max %v", ms3(lat[len(lat)/2]), ms3(lat[len(lat)*99/100]), ms3(lat[len(lat)-1]))
		}
		rows = append(rows,
			row{"idle keep-alive HTTP connections held", fmt.Sprintf("%d of %d; a second request failed on %d of %d", held, nHTTP, dead, min(1000, held)), "100000"},
			row{"  node RSS per idle HTTP connection", fmt.Sprintf("%.2f KiB (%d → %d MiB), %.2f fds", per/1024, rss0>>20, rss1>>20, fdsPer), "≤ 2× HAProxy's (≈1.2 KiB)"},
			row{"  new request on a new connection meanwhile", latency, "quick"},
		)
	}
	if nTCP > 0 {
		held, dead, per, fdsPer, rss0, rss1 := phase("TCP", nTCP)
		rows = append(rows,
			row{"idle TCP sessions held", fmt.Sprintf("%d of %d; a second exchange failed on %d of %d", held, nTCP, dead, min(1000, held)), ""},
			row{"  node RSS per idle TCP session", fmt.Sprintf("%.2f KiB (%d → %d MiB), %.2f fds", per/1024, rss0>>20, rss1>>20, fdsPer), "≤ 2× HAProxy's (≈2.1 KiB)"},
		)
	}
	return rows, ok
}

// checkSysctls reports the kernel settings the idle part depends on, and
// a row for each that will not do for conns connections. It changes none.
func checkSysctls(conns int) []row {
	read := func(name string) string {
		b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
		if err != nil {
			return "?"
		}
		return strings.Join(strings.Fields(string(b)), " ")
	}
	var rows []row
	ports := strings.Fields(read("net.ipv4.ip_local_port_range"))
	perSource := 28000
	if len(ports) == 2 {
		lo, _ := strconv.Atoi(ports[0])
		hi, _ := strconv.Atoi(ports[1])
		perSource = hi - lo + 1
	}
	nrOpen, _ := strconv.Atoi(read("fs.nr_open"))
	progress("idle: sysctls: fs.nr_open %d, net.ipv4.ip_local_port_range %v (×%d sources), net.core.somaxconn %s, fs.file-max %s",
		nrOpen, ports, sources, read("net.core.somaxconn"), read("fs.file-max"))
	if perSource*sources < conns {
		rows = append(rows, row{"sysctl net.ipv4.ip_local_port_range", "too narrow for " + strconv.Itoa(conns) + " connections", "widen it"})
	}
	if nrOpen > 0 && nrOpen < conns+2000 {
		rows = append(rows, row{"sysctl fs.nr_open", strconv.Itoa(nrOpen), "raise it"})
	}
	return rows
}

// raiseNofile raises the process's RLIMIT_NOFILE, soft and hard, to at
// least n (root may raise the hard limit up to fs.nr_open).
func raiseNofile(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= n {
		return nil
	}
	lim.Cur, lim.Max = n, max(lim.Max, n)
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

// child is the node process of the idle part. It runs until its stdin
// closes, and answers each line written to it with one line of its Go
// memory figures.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// mem asks the child for its Go memory figures: goroutines, and the
// stacks' and the heap's share of its RSS.
func (c *child) mem() string {
	if _, err := io.WriteString(c.stdin, "mem\n"); err != nil {
		return err.Error()
	}
	line, err := c.out.ReadString('\n')
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(line)
}

func startChild(httpAddr, tcpAddr string, backends []string, fds int) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=1",
		"SCALE_HTTP="+httpAddr, "SCALE_TCP="+tcpAddr, "SCALE_BACKENDS="+strings.Join(backends, ","), "SCALE_FDS="+strconv.Itoa(fds))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("did not start: %q %v", line, err)
	}
	return &child{cmd: cmd, stdin: stdin, out: out}, nil
}

// rss is the child's resident set, in bytes.
func (c *child) rss() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// fds is the number of the child's open descriptors.
func (c *child) fds() int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", c.cmd.Process.Pid))
	return len(ents)
}

// stop ends the child, by its pid.
func (c *child) stop() {
	c.cmd.Process.Kill()
	c.cmd.Wait()
}

// serveChild is the node of the idle part: an HTTP and a TCP listener to
// the parent's backends, until the parent goes away (stdin closes).
func serveChild() {
	fds, _ := strconv.Atoi(os.Getenv("SCALE_FDS"))
	if err := raiseNofile(uint64(fds)); err != nil {
		fmt.Fprintln(os.Stderr, "node: RLIMIT_NOFILE:", err)
		os.Exit(1)
	}
	var eps []string
	for i, b := range strings.Split(os.Getenv("SCALE_BACKENDS"), ",") {
		eps = append(eps, fmt.Sprintf("{ name: b%d, address: %q }", i, b))
	}
	y := fmt.Sprintf(`
clusters:
  - { name: web, endpoints: [%s] }
  - { name: db, lb_policy: LEAST_CONN, endpoints: [%s] }
listeners:
  - { name: http, address: %q, protocol: HTTP, default_cluster: web, http: { idle_timeout: 1h } }
  - { name: tcp, address: %q, protocol: TCP, default_cluster: db }
`, strings.Join(eps, ", "), strings.Join(eps, ", "), os.Getenv("SCALE_HTTP"), os.Getenv("SCALE_TCP"))
	snap, err := snapshot.Parse([]byte(y), "")
	if err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		os.Exit(1)
	}
	n := node.New(node.Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err := n.Apply("1", snap); err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() { // until the parent ends
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Printf("goroutines %d, stacks %d MiB, heap in use %d MiB, heap objects %d\n",
			runtime.NumGoroutine(), ms.StackInuse>>20, ms.HeapInuse>>20, ms.HeapObjects)
	}
	n.Close()
}

// request is what every client sends; the backends answer backendResponse.
var request = []byte("GET /idle HTTP/1.1\r\nHost: scale.test\r\n\r\n")

// responseLen is the length of the backends' response.
var responseLen = len("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n")

// openIdle opens n connections to addr, from sources firstSource and on in
// turn, each doing one exchange, and returns their descriptors, raw: no
// goroutine or buffer per connection, so the client stays small.
func openIdle(addr string, n, firstSource int) ([]int, error) {
	if n == 0 {
		return nil, nil
	}
	ap, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return nil, err
	}
	var dst [4]byte
	copy(dst[:], ap.IP.To4())
	fds := make([]int, n)
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	// Opening 100k takes minutes under emulation (make bench-scale-vm):
	// say how far it got now and then.
	start, done := time.Now(), make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(30 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				progress("idle: %d of %d opened in %v", min(next.Load(), int64(n)), n, time.Since(start).Round(time.Second))
			}
		}
	}()
	for range 16 {
		wg.Go(func() {
			buf := make([]byte, 4096)
			for {
				i := int(next.Add(1) - 1)
				if i >= n || firstErr.Load() != nil {
					return
				}
				src := [4]byte{127, 0, 0, byte(2 + (firstSource+i)%sources)}
				fd, err := rawExchange(src, dst, ap.Port, buf)
				if err != nil {
					err = fmt.Errorf("connection %d: %w", i, err)
					firstErr.CompareAndSwap(nil, &err)
					fd = -1
				}
				fds[i] = fd
			}
		})
	}
	wg.Wait()
	held := fds[:0]
	for _, fd := range fds {
		if fd > 0 {
			held = append(held, fd)
		}
	}
	if p := firstErr.Load(); p != nil {
		return held, *p
	}
	return held, nil
}

// rawExchange connects from src to dst:port, sends request and reads the
// response, and returns the socket, open.
func rawExchange(src, dst [4]byte, port int, buf []byte) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	tv := syscall.Timeval{Sec: 10}
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv)
	// The port is chosen at connect, not at bind: no connect(2) that picks
	// its own port may take a port that bind(2) gave out, whatever the
	// address, and the kernel gives bind the odd half of the range, where
	// the node's own connects to the backends look once the even half is
	// used up. With the ports bound, the node's connects failed at about
	// 57k TCP sessions (4 backends × the even half).
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1); err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("IP_BIND_ADDRESS_NO_PORT: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: src}); err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("bind %v: %w", src, err)
	}
	if err := rawConnect(fd, &syscall.SockaddrInet4{Port: port, Addr: dst}); err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("connect: %w", err)
	}
	if err := exchange(fd, buf); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// rawConnect connects a blocking socket, through the EINTRs the runtime's
// signals cause (a socket with a timeout is not restarted by SA_RESTART).
func rawConnect(fd int, sa syscall.Sockaddr) error {
	err := syscall.Connect(fd, sa)
	for err == syscall.EINTR || err == syscall.EALREADY {
		time.Sleep(time.Millisecond)
		err = syscall.Connect(fd, sa)
	}
	if err == syscall.EISCONN {
		return nil
	}
	return err
}

// exchange sends request over fd and reads one whole response.
func exchange(fd int, buf []byte) error {
	for off := 0; off < len(request); {
		n, err := syscall.Write(fd, request[off:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		off += n
	}
	got := 0
	for got < responseLen {
		n, err := syscall.Read(fd, buf[got:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if n == 0 {
			return errors.New("closed by the node")
		}
		got += n
	}
	if !bytes.HasPrefix(buf[:got], []byte("HTTP/1.1 200 ")) || !bytes.HasSuffix(buf[:got], []byte("ok\n")) {
		return fmt.Errorf("response %q", buf[:got])
	}
	return nil
}

// reuse sends one more request on up to sample of the held connections,
// spread over them, and returns how many failed.
func reuse(fds []int, sample int) int {
	if len(fds) == 0 {
		return 0
	}
	buf := make([]byte, 4096)
	failed := 0
	step := max(1, len(fds)/sample)
	for i := 0; i < len(fds); i += step {
		if err := exchange(fds[i], buf); err != nil {
			// Which ones failed (by the order they were opened in), and
			// how: the first few.
			if failed < 5 {
				progress("idle: held connection %d of %d: %v", i, len(fds), err)
			}
			failed++
		}
	}
	return failed
}

func closeAll(fds []int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}

// timedRequest is one request on a new connection to addr.
func timedRequest(addr string) (time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(request); err != nil {
		return 0, err
	}
	buf := make([]byte, 4096)
	got := 0
	for got < responseLen {
		n, err := c.Read(buf[got:])
		if err != nil {
			return 0, err
		}
		got += n
	}
	return time.Since(start), nil
}
