package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sluice-lb/sluice/internal/promtext"
	"github.com/sluice-lb/sluice/internal/syncbuf"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds the commands once per test run, as `make build` does.
func binaries(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binaries; skipped with -short")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "sluice-e2e-bin")
		if buildErr != nil {
			return
		}
		// The go command make runs (GO), whose GOROOT its netpoll overlay
		// in GOFLAGS names; go on PATH otherwise.
		goCmd := cmp.Or(os.Getenv("GO"), "go")
		out, err := exec.Command(goCmd, "build", "-o", binDir+"/", "../cmd/...").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// proc is a process started by a test; it is killed at cleanup.
type proc struct {
	cmd    *exec.Cmd
	out    *syncbuf.Buffer
	exited chan struct{}
}

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *proc) stop(t *testing.T) {
	if !p.alive() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(testTimeout):
		p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("%s did not stop on SIGTERM", p.cmd.Path)
	}
}

func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return startAs(t, nil, name, args...)
}

// startAs is start with the process run as cred's user, when not nil.
func startAs(t *testing.T, cred *syscall.Credential, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(filepath.Join(binaries(t), name), args...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	buf := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: buf, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("%s output:\n%s", name, buf.String())
		}
	})
	return p
}

// ctl runs sluicectl and returns its stdout, stderr and exit code.
func ctl(t *testing.T, cp string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binaries(t), "sluicectl"), append([]string{"--cp", cp}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("sluicectl: %v", err)
	}
	return stdout.String(), stderr.String(), code
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ctlApply applies the snapshot yaml with sluicectl apply -f, from a file
// as a user would, and fails the test when sluicectl does.
func ctlApply(t *testing.T, cp, yaml string) {
	t.Helper()
	if _, errOut, code := ctl(t, cp, "apply", "-f", writeFile(t, t.TempDir(), "snap.yaml", yaml)); code != 0 {
		t.Fatalf("apply: %s", errOut)
	}
}

// TestBinariesEndToEnd drives the real binaries the way the README does:
// sluice-cp, sluice-dp, demo backends, and sluicectl for every step.
func TestBinariesEndToEnd(t *testing.T) {
	dir := t.TempDir()
	cpAddr, cpHTTP, admin := freeAddr(t), freeAddr(t), freeAddr(t)
	web1, web2, lst, tcp := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)

	cp := start(t, "sluice-cp", "--listen", cpAddr, "--http", cpHTTP, "--data", filepath.Join(dir, "data"))
	start(t, "demo-backend", "--listen", web1, "--name", "web1")
	start(t, "demo-backend", "--listen", web2, "--name", "web2")
	waitFor(t, "sluice-cp /healthz", func() bool {
		resp, err := http.Get("http://" + cpHTTP + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	dp := start(t, "sluice-dp", "--cp", cpAddr, "--node-id", "edge-1", "--labels", "zone=a", "--admin", admin, "--drain-grace", "2s")

	snap := fmt.Sprintf(`clusters:
  - name: web
    lb_policy: ROUND_ROBIN
    health_check: { interval: 2s, fall: 3, rise: 2 }
    endpoints:
      - { name: web1, address: %s, weight: 2 }
      - { name: web2, address: %s, weight: 1 }
listeners:
  - name: public
    address: %s
    protocol: HTTP
    default_cluster: web
  - name: db
    address: %s
    protocol: TCP
    default_cluster: web
`, web1, web2, lst, tcp)
	file := writeFile(t, dir, "snap.yaml", snap)
	out, errOut, code := ctl(t, cpAddr, "apply", "-f", file)
	if code != 0 || !strings.Contains(out, "version 1") {
		t.Fatalf("apply: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	waitFor(t, "the HTTP listener", func() bool { _, err := get(http.DefaultClient, "http://"+lst+"/"); return err == nil })
	counts := map[string]int{}
	for range 30 {
		body, err := get(http.DefaultClient, "http://"+lst+"/")
		if err != nil {
			t.Fatal(err)
		}
		counts[strings.TrimSpace(body)]++
	}
	if counts["hello from web1"] != 20 || counts["hello from web2"] != 10 {
		t.Errorf("answers %v, want web1:20 web2:10", counts)
	}
	if body, err := tcpGet(tcp); err != nil || !strings.HasPrefix(body, "hello from web") {
		t.Errorf("TCP listener: %q, %v", body, err)
	}

	// sluicectl nodes shows the node, its labels and the applied version.
	waitFor(t, "nodes to show version 1 applied", func() bool {
		out, _, _ := ctl(t, cpAddr, "nodes")
		return strings.Contains(out, "edge-1") && strings.Contains(out, "zone=a") && strings.Contains(out, " 1 ")
	})

	// A bad snapshot is refused whole with field paths; nothing is stored.
	bad := strings.Replace(snap, "weight: 1 }", "weight: 300 }", 1)
	bad = strings.Replace(bad, "default_cluster: web\n  - name: db", "default_cluster: nope\n  - name: db", 1)
	_, errOut, code = ctl(t, cpAddr, "apply", "-f", writeFile(t, dir, "bad.yaml", bad))
	if code != 1 || !strings.Contains(errOut, "clusters[0].endpoints[1].weight") || !strings.Contains(errOut, "listeners[0].default_cluster") {
		t.Errorf("bad apply: exit %d, stderr %q; want exit 1 and both field paths", code, errOut)
	}
	_, errOut, code = ctl(t, cpAddr, "apply", "-f", writeFile(t, dir, "typo.yaml", strings.Replace(snap, "lb_policy", "lb_polcy", 1)))
	if code != 1 || !strings.Contains(errOut, "clusters[0].lb_polcy") {
		t.Errorf("unknown key: exit %d, stderr %q; want exit 1 naming clusters[0].lb_polcy", code, errOut)
	}
	out, _, _ = ctl(t, cpAddr, "history")
	if strings.Contains(out, "\n2 ") || strings.Contains(out, "* 2") {
		t.Errorf("history after refused applies shows a version 2:\n%s", out)
	}

	// Garbage on the gRPC port and on both listeners crashes nothing.
	for _, addr := range []string{cpAddr, lst, tcp} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("\x16\x03\x01\x00\xff garbage \r\n\r\n\x00\x00\x00"))
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(time.Second))
		c.Read(make([]byte, 512))
		c.Close()
	}

	// The control plane restarts; the node keeps serving meanwhile and
	// applies the next version after it reconnects.
	cp.stop(t)
	if _, err := get(http.DefaultClient, "http://"+lst+"/"); err != nil {
		t.Errorf("with the control plane down: %v", err)
	}
	start(t, "sluice-cp", "--listen", cpAddr, "--http", cpHTTP, "--data", filepath.Join(dir, "data"))
	waitFor(t, "the control plane to come back", func() bool { _, _, code := ctl(t, cpAddr, "history"); return code == 0 })
	out, _, code = ctl(t, cpAddr, "apply", "-f", writeFile(t, dir, "v2.yaml", strings.Replace(snap, "weight: 2", "weight: 1", 1)))
	if code != 0 || !strings.Contains(out, "version 2") {
		t.Fatalf("apply after restart: exit %d, %q", code, out)
	}
	waitNode := func(v string) {
		t.Helper()
		waitFor(t, "node to apply version "+v, func() bool {
			resp, err := http.Get("http://" + admin + "/status")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			return strings.Contains(b.String(), `"version": "`+v+`"`)
		})
	}
	waitNode("2")
	out, _, _ = ctl(t, cpAddr, "get", "-o", "yaml")
	if !strings.Contains(out, "lb_policy: ROUND_ROBIN") || !strings.Contains(out, "name: web2") {
		t.Errorf("get -o yaml:\n%s", out)
	}

	// Runtime operations are versions like any other apply.
	answers := func(n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for range n {
			body, err := get(http.DefaultClient, "http://"+lst+"/")
			if err != nil {
				t.Fatal(err)
			}
			got[strings.TrimPrefix(strings.TrimSpace(body), "hello from ")]++
		}
		return got
	}
	out, errOut, code = ctl(t, cpAddr, "set-weight", "web/web2", "3")
	if code != 0 || !strings.Contains(out, "version 3") || !strings.Contains(out, "weight 1 -> 3") {
		t.Fatalf("set-weight: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	waitNode("3")
	if got := answers(40); got["web1"] != 10 || got["web2"] != 30 {
		t.Errorf("after set-weight web/web2 3: %v, want web1:10 web2:30", got)
	}
	if _, errOut, code = ctl(t, cpAddr, "drain", "web/web1"); code != 0 {
		t.Fatalf("drain: exit %d, %q", code, errOut)
	}
	waitNode("4")
	if got := answers(20); got["web2"] != 20 {
		t.Errorf("with web1 draining: %v, want all 20 from web2", got)
	}
	if _, errOut, code = ctl(t, cpAddr, "enable", "web/web1"); code != 0 {
		t.Fatalf("enable: exit %d, %q", code, errOut)
	}
	waitNode("5")
	if got := answers(40); got["web1"] != 10 || got["web2"] != 30 {
		t.Errorf("after enable: %v, want web1:10 web2:30", got)
	}
	_, errOut, code = ctl(t, cpAddr, "set-weight", "web/web9", "2")
	if code != 1 || !strings.Contains(errOut, `cluster "web" has no endpoint "web9" (it has: web1, web2)`) {
		t.Errorf("set-weight on a missing endpoint: exit %d, stderr %q", code, errOut)
	}
	out, _, _ = ctl(t, cpAddr, "history")
	if !strings.Contains(out, "set-weight web/web2 3") || !strings.Contains(out, "drain web/web1") || strings.Contains(out, "web9") {
		t.Errorf("history does not show the runtime operations (or shows the refused one):\n%s", out)
	}
	if strings.Contains(out, "\n6 ") || strings.Contains(out, "* 6") {
		t.Errorf("a refused set-weight stored version 6:\n%s", out)
	}
	if !dp.alive() {
		t.Errorf("sluice-dp exited")
	}
}

// startEdge starts a control plane, a backend that answers "a", and
// sluice-dp edge-1 with admin address admin and --drain-grace grace; it
// applies a snapshot with one HTTP listener in front of a and waits until
// the listener answers.
func startEdge(t *testing.T, admin, grace string) (cpAddr, lst string, b *backend, dp *proc) {
	t.Helper()
	dir := t.TempDir()
	cpAddr, cpHTTP, lst := freeAddr(t), freeAddr(t), freeAddr(t)
	start(t, "sluice-cp", "--listen", cpAddr, "--http", cpHTTP, "--data", filepath.Join(dir, "data"))
	b = startBackend(t, "a")
	dp = start(t, "sluice-dp", "--cp", cpAddr, "--node-id", "edge-1", "--admin", admin, "--drain-grace", grace)
	waitFor(t, "sluice-cp", func() bool { _, _, code := ctl(t, cpAddr, "history"); return code == 0 })
	ctlApply(t, cpAddr, fmt.Sprintf(`clusters:
  - name: web
    endpoints: [{ name: a, address: %s }]
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
`, b.addr, lst))
	waitFor(t, "the listener", func() bool { _, err := get(http.DefaultClient, "http://"+lst+"/"); return err == nil })
	return cpAddr, lst, b, dp
}

// bgAnswer is what a request made in the background got.
type bgAnswer struct {
	body  string
	close bool // the response said Connection: close
	err   error
}

// getInBackground sends GET url on a connection of its own, which no
// earlier request used (so a client's retry of a request on a reused
// connection cannot hide how the connection ended), and delivers the
// answer on the channel it returns.
func getInBackground(url string) <-chan bgAnswer {
	got := make(chan bgAnswer, 1)
	go func() {
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get(url)
		if err != nil {
			got <- bgAnswer{err: err}
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- bgAnswer{string(body), resp.Close, err}
	}()
	return got
}

// TestNodeDrainOnSIGTERM: SIGTERM takes sluice-dp out of service the way
// HAProxy's soft stop does: /readyz turns 503, the listening socket closes,
// a request in flight completes (with Connection: close), the control plane
// shows the node draining and then gone, and the process exits once its
// work is done, well before --drain-grace. Meanwhile /status counts the
// request's connection as draining, until --drain-grace at the latest.
func TestNodeDrainOnSIGTERM(t *testing.T) {
	admin := freeAddr(t)
	cpAddr, lst, b, dp := startEdge(t, admin, "10s")

	inflight := getInBackground("http://" + lst + "/slow")
	waitFor(t, "the slow request to reach a", func() bool { return b.held.Load() == 1 })

	signalled := time.Now()
	dp.cmd.Process.Signal(syscall.SIGTERM)
	waitFor(t, "the listening socket to close", func() bool {
		c, err := net.DialTimeout("tcp", lst, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	waitDraining(t, admin)
	waitFor(t, "sluicectl nodes to show the node draining", func() bool {
		out, _, _ := ctl(t, cpAddr, "nodes")
		return strings.Contains(out, "draining")
	})
	// startEdge's idle connection closes at once, the held one stays,
	// until --drain-grace after the signal at the latest.
	var ends *time.Time
	waitFor(t, "/status to list public with one connection draining until --drain-grace ends", func() bool {
		got := adminListeners(t, admin)
		if len(got) != 1 {
			return false
		}
		ends = got[0].GraceEnds
		return got[0].Name == "public" && !got[0].Draining && got[0].Connections == 1 && got[0].DrainingConnections == 1 && ends != nil
	})
	if ends.Before(signalled.Add(10*time.Second)) || ends.After(signalled.Add(15*time.Second)) {
		t.Errorf("/status: public's grace ends %v after the signal, want --drain-grace 10s after the drain began", ends.Sub(signalled))
	}
	if !dp.alive() {
		t.Fatal("sluice-dp exited with a request in flight")
	}
	close(b.release)
	r := <-inflight
	if r.err != nil || r.body != "a" || !r.close {
		t.Errorf("request in flight at SIGTERM: %q close=%v err=%v; want a, with Connection: close", r.body, r.close, r.err)
	}
	select {
	case <-dp.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("sluice-dp still running 5s after its last request ended")
	}
	if took := time.Since(signalled); took > 8*time.Second {
		t.Errorf("drain took %v; the work ended long before --drain-grace 10s", took)
	}
	waitFor(t, "sluicectl nodes to show the node gone", func() bool {
		out, _, _ := ctl(t, cpAddr, "nodes")
		return strings.Contains(out, "disconnected")
	})
}

// waitDraining waits until the /readyz of the node whose admin address
// is admin answers 503, as it does once the node drains.
func waitDraining(t *testing.T, admin string) {
	t.Helper()
	waitFor(t, "/readyz to say draining", func() bool {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 503
	})
}

// TestSecondSIGTERMExitsAtOnce: a second SIGTERM during the drain ends
// sluice-dp at once, by the signal, as without a handler, and its log says
// so first: the request still in flight is cut, long before --drain-grace.
func TestSecondSIGTERMExitsAtOnce(t *testing.T) {
	admin := freeAddr(t)
	_, lst, b, dp := startEdge(t, admin, "30s")
	inflight := getInBackground("http://" + lst + "/slow")
	waitFor(t, "the slow request to reach a", func() bool { return b.held.Load() == 1 })
	dp.cmd.Process.Signal(syscall.SIGTERM)
	waitDraining(t, admin)
	dp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-dp.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("sluice-dp still running 5s after a second SIGTERM; --drain-grace is 30s")
	}
	if ws, ok := dp.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("sluice-dp ended with %v, want killed by SIGTERM", dp.cmd.ProcessState)
	}
	if out := dp.out.String(); !strings.Contains(out, "second signal: exiting at once") {
		t.Errorf("sluice-dp's log does not say it exits at the second signal:\n%s", out)
	}
	if r := <-inflight; r.err == nil {
		t.Errorf("the request in flight got %q, want its connection cut", r.body)
	}
}

// TestNodeStatusShowsControlPlane: sluice-dp's /status and /metrics say
// what its own log says: that the control plane holds its subscription,
// which version it refused and why (a port another process holds), and,
// once the control plane is gone, that it is cut off and why, while it
// serves on.
func TestNodeStatusShowsControlPlane(t *testing.T) {
	dir := t.TempDir()
	cpAddr, cpHTTP, admin, lst := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	cp := start(t, "sluice-cp", "--listen", cpAddr, "--http", cpHTTP, "--data", filepath.Join(dir, "data"))
	a := startBackend(t, "a")
	start(t, "sluice-dp", "--cp", cpAddr, "--node-id", "edge-1", "--admin", admin)
	waitFor(t, "sluice-cp", func() bool { _, _, code := ctl(t, cpAddr, "history"); return code == 0 })
	const snap = `clusters:
  - name: web
    endpoints: [{ name: a, address: %s }]
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
`
	ctlApply(t, cpAddr, fmt.Sprintf(snap, a.addr, lst))
	waitFor(t, "the listener", func() bool { _, err := get(http.DefaultClient, "http://"+lst+"/"); return err == nil })

	type refused struct{ Version, Error string }
	type controlPlane struct {
		Address   string
		Connected bool
		Error     string
		Refused   *refused
	}
	status := func() controlPlane {
		t.Helper()
		var st struct {
			ControlPlane *controlPlane `json:"control_plane"`
		}
		if adminStatus(t, admin, &st); st.ControlPlane == nil {
			t.Fatal("/status without control_plane")
		}
		return *st.ControlPlane
	}
	metric := func(name string) float64 { return promtext.Scrape(t, "http://"+admin+"/metrics").Value(name) }
	waitFor(t, "/status to show the subscription", func() bool { s := status(); return s.Connected && s.Address == cpAddr })

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ctlApply(t, cpAddr, fmt.Sprintf(snap, a.addr, taken.Addr()))
	var s controlPlane
	waitFor(t, "/status to show version 2 refused", func() bool { s = status(); return s.Refused != nil })
	if s.Refused.Version != "2" || !strings.Contains(s.Refused.Error, "address already in use") || !s.Connected {
		t.Errorf("/status control_plane = %+v, want version 2 refused for the address in use, still connected", s)
	}
	if v := metric("sluice_discovery_refused_total"); v != 1 {
		t.Errorf("sluice_discovery_refused_total = %v, want 1", v)
	}

	cp.stop(t)
	waitFor(t, "/status to show the control plane unreachable", func() bool {
		s = status()
		return !s.Connected && strings.Contains(s.Error, "connection refused")
	})
	if v := metric("sluice_discovery_connected"); v != 0 {
		t.Errorf("sluice_discovery_connected = %v with the control plane gone, want 0", v)
	}
	if body, err := get(http.DefaultClient, "http://"+lst+"/"); err != nil || body != "a" {
		t.Errorf("with the control plane gone: %q, %v; want a", body, err)
	}
}

// TestListenerProtocolChange: a listener that sluicectl apply changes
// from HTTP to TCP keeps its port and relays new connections as TCP at
// once (to the TCP listener's default cluster, b), while a request in
// flight on its HTTP side gets its answer from a, with Connection: close,
// as when a listener is removed. Its connection is recorded as
// listener_closed.
func TestListenerProtocolChange(t *testing.T) {
	cpAddr, lst, a, _ := startEdge(t, freeAddr(t), "10s")
	b := startBackend(t, "b")
	inflight := getInBackground("http://" + lst + "/slow")
	waitFor(t, "the slow request to reach a", func() bool { return a.held.Load() == 1 })

	ctlApply(t, cpAddr, fmt.Sprintf(`clusters:
  - name: web
    endpoints: [{ name: a, address: %s }]
  - name: raw
    endpoints: [{ name: b, address: %s }]
listeners:
  - { name: public, address: %s, protocol: TCP, default_cluster: raw }
`, a.addr, b.addr, lst))
	waitFor(t, "the listener to relay TCP to b", func() bool { body, err := tcpGet(lst); return err == nil && body == "b" })
	close(a.release)
	if r := <-inflight; r.err != nil || r.body != "a" || !r.close {
		t.Errorf("the HTTP request in flight at the change: %q close=%v err=%v; want a, with Connection: close", r.body, r.close, r.err)
	}
	waitListenerClosed(t, cpAddr, "public")
}

// listenerStatus is a listener of sluice-dp's /status.
type listenerStatus struct {
	Name                string     `json:"name"`
	Connections         int        `json:"connections"`
	DrainingConnections int        `json:"draining_connections"`
	Draining            bool       `json:"draining"`
	GraceEnds           *time.Time `json:"grace_ends"`
}

// adminListeners reads the listeners of the /status of the node whose
// admin address is admin.
func adminListeners(t *testing.T, admin string) []listenerStatus {
	t.Helper()
	var st struct {
		Listeners []listenerStatus `json:"listeners"`
	}
	adminStatus(t, admin, &st)
	return st.Listeners
}

// adminStatus decodes into v the /status of the node whose admin address
// is admin.
func adminStatus(t *testing.T, admin string, v any) {
	t.Helper()
	body, err := get(http.DefaultClient, "http://"+admin+"/status")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("/status: %v\n%s", err, body)
	}
}

// waitListenerClosed waits until sluicectl conns lists a connection of
// listener whose reason is listener_closed.
func waitListenerClosed(t *testing.T, cpAddr, listener string) {
	t.Helper()
	waitFor(t, "the listener_closed record of "+listener, func() bool {
		out, _, _ := ctl(t, cpAddr, "conns", "--listener", listener, "--reason", "listener_closed", "-o", "json")
		return strings.Contains(out, "CLOSE_REASON_LISTENER_CLOSED")
	})
}

// TestRemovedListenerGetsDrainGrace: --drain-grace bounds the drain of
// listeners that sluicectl apply removes, as it bounds SIGTERM's and as
// Envoy's drain time bounds both. An HTTP request still waiting for its
// endpoint, and a TCP session, which goes on relaying meanwhile, are
// closed once the node's 3s end: not after the 10s a node gave the
// request before, nor at once, as it ended the session. Meanwhile the
// node's /status lists both listeners as draining, with one connection
// each; afterwards, neither. Both are recorded as listener_closed.
func TestRemovedListenerGetsDrainGrace(t *testing.T) {
	admin := freeAddr(t)
	cpAddr, lst, a, _ := startEdge(t, admin, "3s")
	db := freeAddr(t)
	ctlApply(t, cpAddr, fmt.Sprintf(`clusters:
  - name: web
    endpoints: [{ name: a, address: %s }]
listeners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
  - { name: db, address: %s, protocol: TCP, default_cluster: web }
`, a.addr, lst, db))
	waitFor(t, "the TCP listener", func() bool { _, err := tcpGet(db); return err == nil })
	session, err := net.DialTimeout("tcp", db, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	session.SetDeadline(time.Now().Add(testTimeout))
	sr := bufio.NewReader(session)
	relay := func(when string) {
		t.Helper()
		io.WriteString(session, "GET / HTTP/1.1\r\nHost: e2e\r\n\r\n")
		resp, err := http.ReadResponse(sr, nil)
		if err != nil {
			t.Fatalf("the TCP session %s: %v", when, err)
		}
		if b, _ := io.ReadAll(resp.Body); string(b) != "a" {
			t.Errorf("the TCP session %s: %q, want a", when, b)
		}
	}
	relay("before the removal")
	inflight := getInBackground("http://" + lst + "/slow")
	waitFor(t, "the slow request to reach a", func() bool { return a.held.Load() == 1 })

	ctlApply(t, cpAddr, fmt.Sprintf(`clusters:
  - name: web
    endpoints: [{ name: a, address: %s }]
`, a.addr))
	applied := time.Now()
	waitFor(t, "the listeners' sockets to close", func() bool { _, err := net.DialTimeout("tcp", db, time.Second); return err != nil })
	relay("after the removal")
	listeners := func() []listenerStatus { return adminListeners(t, admin) }
	// public's idle connection from startEdge closes at once, the held one
	// stays.
	waitFor(t, "/status to list db and public draining one connection each, until a time to come", func() bool {
		got := listeners()
		if len(got) != 2 {
			return false
		}
		for i, name := range []string{"db", "public"} {
			l := got[i]
			if l.Name != name || l.Connections != 1 || l.DrainingConnections != 1 || !l.Draining || l.GraceEnds == nil || l.GraceEnds.Before(time.Now()) {
				return false
			}
		}
		return true
	})
	select {
	case r := <-inflight:
		if r.err == nil {
			t.Errorf("the request in flight got %q, want its connection closed without an answer", r.body)
		}
		if took := time.Since(applied); took < 2*time.Second {
			t.Errorf("the request in flight ended %v after the apply, before --drain-grace 3s", took)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("the request in flight still waited 8s after its listener was removed; --drain-grace is 3s")
	}
	session.SetDeadline(applied.Add(8 * time.Second))
	if b, err := io.ReadAll(sr); len(b) > 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the TCP session: read %q, %v; want it closed once --drain-grace 3s ended", b, err)
	}
	waitFor(t, "/status to list no listener", func() bool { return len(listeners()) == 0 })
	waitListenerClosed(t, cpAddr, "public")
	waitListenerClosed(t, cpAddr, "db")
}

// TestDrainGraceRecordsReachControlPlane: a TCP session still open when
// --drain-grace runs out is closed, and its record reaches the control
// plane before the node exits, with reason listener_closed, as do the
// records of connections that ended just before: sluicectl conns lists
// them after the process is gone.
func TestDrainGraceRecordsReachControlPlane(t *testing.T) {
	dir := t.TempDir()
	cpAddr, tcpLst, httpLst := freeAddr(t), freeAddr(t), freeAddr(t)
	start(t, "sluice-cp", "--listen", cpAddr, "--http", "", "--data", filepath.Join(dir, "data"))
	b := startBackend(t, "a")
	dp := start(t, "sluice-dp", "--cp", cpAddr, "--node-id", "edge-1", "--admin", "", "--drain-grace", "1s")
	waitFor(t, "sluice-cp", func() bool { _, _, code := ctl(t, cpAddr, "history"); return code == 0 })
	ctlApply(t, cpAddr, fmt.Sprintf(`clusters:
  - name: web
    endpoints: [{ name: a, address: %s }]
listeners:
  - { name: db, address: %s, protocol: TCP, default_cluster: web }
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
`, b.addr, tcpLst, httpLst))
	waitFor(t, "the listeners", func() bool {
		_, err := get(http.DefaultClient, "http://"+httpLst+"/")
		_, terr := tcpGet(tcpLst)
		return err == nil && terr == nil
	})
	// A session that stays open through the drain: one exchange, then
	// nothing, as a client with a pooled database connection does.
	session, err := net.DialTimeout("tcp", tcpLst, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	session.SetDeadline(time.Now().Add(testTimeout))
	if _, err := session.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := session.Read(make([]byte, 512)); err != nil {
		t.Fatalf("the session's first answer: %v", err)
	}
	// Connections that end just before the node goes: their records are
	// still gathering for the next batch when it exits.
	for range 3 {
		if _, err := tcpGet(tcpLst); err != nil {
			t.Fatal(err)
		}
	}
	dp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-dp.exited:
	case <-time.After(testTimeout):
		t.Fatal("sluice-dp still running long after --drain-grace 1s")
	}
	if n, err := session.Read(make([]byte, 1)); err == nil {
		t.Errorf("the session read %d bytes after the node exited, want it closed", n)
	}
	out, errOut, code := ctl(t, cpAddr, "conns", "--node", "edge-1", "--listener", "db", "-o", "json")
	if code != 0 {
		t.Fatalf("sluicectl conns: exit %d: %s", code, errOut)
	}
	var got struct {
		Records []struct {
			CloseReason string `json:"close_reason"`
		} `json:"records"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("sluicectl conns -o json: %v\n%s", err, out)
	}
	reasons := map[string]int{}
	for _, r := range got.Records {
		reasons[r.CloseReason]++
	}
	// Each tcpGet, of the wait for the listeners and the three above, is a
	// session the backend ended (it closes after its answer).
	if reasons["CLOSE_REASON_LISTENER_CLOSED"] != 1 || reasons["CLOSE_REASON_SERVER_CLOSED"] < 4 || len(reasons) != 2 {
		t.Errorf("records of listener db after the node exited, by reason: %v; want 1 listener_closed (the open session) and at least 4 server_closed\n%s", reasons, out)
	}
}

// TestRollingRestartSameNodeID: a new sluice-dp started with the node's id
// while the old process still drains (a DaemonSet's surge, a restart on
// the same host) takes the node's streams over for good. The old process
// does not take them back: the control plane shows the node connected, not
// draining, on the new process's stream, which stays up.
func TestRollingRestartSameNodeID(t *testing.T) {
	cpAddr, lst, b, old := startEdge(t, freeAddr(t), "30s")
	// A request in flight keeps the old process draining.
	inflight := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + lst + "/slow")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		inflight <- err
	}()
	waitFor(t, "the slow request to reach a", func() bool { return b.held.Load() == 1 })
	old.cmd.Process.Signal(syscall.SIGTERM)
	waitFor(t, "sluicectl nodes to show the node draining", func() bool {
		out, _, _ := ctl(t, cpAddr, "nodes")
		return strings.Contains(out, "draining")
	})

	fresh := start(t, "sluice-dp", "--cp", cpAddr, "--node-id", "edge-1", "--admin", freeAddr(t))
	node := func() *sluicev1.NodeStatus {
		out, errOut, code := ctl(t, cpAddr, "nodes", "-o", "json")
		var resp sluicev1.ListNodesResponse
		if code != 0 || protojson.Unmarshal([]byte(out), &resp) != nil || len(resp.GetNodes()) != 1 {
			t.Fatalf("nodes -o json: exit %d, %s%s", code, out, errOut)
		}
		return resp.GetNodes()[0]
	}
	var taken *sluicev1.NodeStatus
	waitFor(t, "the new process to hold the node", func() bool {
		taken = node()
		return taken.GetConnected() && !taken.GetDraining() && taken.GetAckedVersion() == 1
	})
	waitFor(t, "the listener on the new process", func() bool { body, err := get(http.DefaultClient, "http://"+lst+"/"); return err == nil && body == "a" })
	// The old process, replaced, would come back within a few hundred
	// milliseconds, and its next report would mark the node draining.
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		n := node()
		if !n.GetConnected() || n.GetDraining() || n.GetPeer() != taken.GetPeer() || !n.GetConnectedSince().AsTime().Equal(taken.GetConnectedSince().AsTime()) {
			t.Fatalf("node after the new process took it: connected=%v draining=%v peer %s since %v; want the new process's stream (peer %s since %v), connected",
				n.GetConnected(), n.GetDraining(), n.GetPeer(), n.GetConnectedSince().AsTime(), taken.GetPeer(), taken.GetConnectedSince().AsTime())
		}
	}
	if !old.alive() {
		t.Fatal("the old process exited with a request in flight")
	}
	if out := old.out.String(); !strings.Contains(out, "not reconnecting, the node is draining") {
		t.Errorf("the old process did not log that it stops reconnecting:\n%s", out)
	}
	if out := fresh.out.String(); strings.Contains(out, "stream ended") || strings.Contains(out, "cannot reach the control plane") {
		t.Errorf("the new process lost a stream:\n%s", out)
	}
	close(b.release)
	if err := <-inflight; err != nil {
		t.Errorf("request in flight at SIGTERM: %v", err)
	}
	select {
	case <-old.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the old process still running 10s after its last request ended")
	}
	if n := node(); !n.GetConnected() || n.GetDraining() || n.GetPeer() != taken.GetPeer() {
		t.Errorf("node after the old process exited: connected=%v draining=%v peer %s; want the new process's (%s)", n.GetConnected(), n.GetDraining(), n.GetPeer(), taken.GetPeer())
	}
}

// TestNodeRefusesBadArguments: sluice-dp stops at once, with exit 2 and
// the reason, on what it would otherwise ignore or word obscurely.
func TestNodeRefusesBadArguments(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	missing := filepath.Join(t.TempDir(), "ca.crt")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--node-id", "x", "--admin", "", "extra"}, "sluice-dp: unexpected arguments: [\"extra\"] (every setting is a --flag)\nRun 'sluice-dp --help' for its flags."},
		{[]string{"--node-id", "x", "--admin", "", "--log-level", "bogus"}, `sluice-dp: --log-level: "bogus" is not debug, info, warn or error`},
		// One line and where the usage is, not 70 lines of usage that
		// scroll the line away.
		{[]string{"--node-id", "x", "--admin", taken.Addr().String()}, "sluice-dp: dataplane: --admin: listen tcp " + taken.Addr().String() + ": bind: address already in use"},
		{[]string{"--node-id", "x", "--drain-grace", "30"}, "sluice-dp: invalid value \"30\" for flag -drain-grace: parse error (a duration has a unit: 30s, 1m30s, 500ms)\nRun 'sluice-dp --help' for its flags."},
		{[]string{"--node-id", "x", "--admin", "", "--drain-grace", "-1s"}, "sluice-dp: --drain-grace: -1s is negative; 0 closes every connection at once"},
		{[]string{"--node-id", "x", "--admin", "", "--splice", "on"}, `sluice-dp: --splice: "on" is not auto, always or never`},
		{[]string{"--node-id", "x", "--admin", "", "--max-connections", "-5"}, "sluice-dp: --max-connections: -5 is negative; 0 derives it from the open-file limit"},
		{[]string{"--node-id", "x", "--admin", "", "--ca", missing}, "sluice-dp: --ca/--cert/--key: CA certificate: open " + missing + ": no such file or directory"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		out, err := exec.CommandContext(ctx, filepath.Join(binaries(t), "sluice-dp"), tt.args...).CombinedOutput()
		cancel()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 || strings.TrimSpace(string(out)) != tt.want {
			t.Errorf("sluice-dp %q: %v, output %q; want exit 2 and %q", tt.args, err, out, tt.want)
		}
	}
}

// TestVersionFlags: each program prints its version, toolchain and
// platform, and exits 0 without starting anything.
func TestVersionFlags(t *testing.T) {
	for _, prog := range []string{"sluice-dp", "sluice-cp", "sluicectl"} {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		out, err := exec.CommandContext(ctx, filepath.Join(binaries(t), prog), "--version").Output()
		cancel()
		if err != nil || !regexp.MustCompile(`^`+prog+` \S+ \(go1\.[0-9.]+ \w+/\w+\)\n$`).Match(out) {
			t.Errorf("%s --version: %v, %q; want %q", prog, err, out, prog+" VERSION (goX.Y.Z OS/ARCH)")
		}
	}
}
