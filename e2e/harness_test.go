// Package e2e tests Sluice end to end: a real control plane, real nodes and
// real backends, all on loopback sockets, talking the real gRPC API.
package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/controlplane"
	"github.com/sluice-lb/sluice/dataplane"
	"github.com/sluice-lb/sluice/internal/loopback"
	"github.com/sluice-lb/sluice/internal/poll"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// testTimeout bounds every wait of a test.
const testTimeout = 15 * time.Second

func quietLogger() *slog.Logger {
	if os.Getenv("SLUICE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// cp is a control plane running in the test process.
type cp struct {
	addr   string
	http   string // /healthz and /metrics
	dir    string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	api    sluicev1.ConfigServiceClient
}

// startCP starts a control plane on dir; listen "" picks a free port.
func startCP(t *testing.T, dir, listen string) *cp {
	t.Helper()
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	srv, err := controlplane.New(controlplane.Options{Listen: listen, HTTP: "127.0.0.1:0", DataDir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("control plane: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &cp{addr: srv.Addr().String(), http: srv.HTTPAddr().String(), dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() { c.done <- srv.Serve(ctx) }()
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c.api = sluicev1.NewConfigServiceClient(conn)
	t.Cleanup(func() { conn.Close(); c.stop(t) })
	return c
}

// stop stops the control plane and waits for it; it may be called again.
func (c *cp) stop(t *testing.T) {
	c.once.Do(func() {
		c.cancel()
		select {
		case err := <-c.done:
			if err != nil {
				t.Errorf("control plane: %v", err)
			}
		case <-time.After(testTimeout):
			t.Errorf("control plane did not stop")
		}
	})
}

// apply stores a YAML snapshot and returns its version.
func (c *cp) apply(t *testing.T, yaml string) uint64 {
	t.Helper()
	snap, err := snapshot.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	resp, err := c.api.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: snap, Author: "e2e"})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return resp.GetVersion()
}

// nodeStatus returns what the control plane knows of one node.
func (c *cp) nodeStatus(t *testing.T, id string) *sluicev1.NodeStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	resp, err := c.api.ListNodes(ctx, &sluicev1.ListNodesRequest{})
	if err != nil {
		t.Fatalf("list nodes: %v", err)
	}
	for _, n := range resp.GetNodes() {
		if n.GetId() == id {
			return n
		}
	}
	return nil
}

// startNode starts a dataplane node subscribed to cpAddr.
func startNode(t *testing.T, cpAddr, id string) *dataplane.Dataplane {
	t.Helper()
	dp, err := dataplane.Start(dataplane.Options{
		ControlPlane: cpAddr,
		Node:         &sluicev1.Node{Id: id, Labels: map[string]string{"test": t.Name()}},
		Logger:       quietLogger(),
		MinBackoff:   20 * time.Millisecond,
		MaxBackoff:   200 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	t.Cleanup(dp.Close)
	return dp
}

// waitFor polls cond until it holds or the test times out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, testTimeout, 10*time.Millisecond, what, cond)
}

// waitVersion waits until the node applied version v.
func waitVersion(t *testing.T, dp *dataplane.Dataplane, v uint64) {
	t.Helper()
	want := fmt.Sprint(v)
	waitFor(t, "node to apply version "+want, func() bool { return dp.Node.Version() == want })
}

// backend is an HTTP server that answers with its name. A request for
// /slow is held until release is closed; held counts them.
type backend struct {
	name    string
	addr    string
	srv     *http.Server
	mu      sync.Mutex
	hits    int
	held    atomic.Int32
	release chan struct{}
}

// errorBackend starts an HTTP server that answers every request with
// status code and text (http.Error), and returns its address.
func errorBackend(t *testing.T, code int, text string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, text, code)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, addr: ln.Addr().String(), release: make(chan struct{})}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.hits++
		b.mu.Unlock()
		if r.URL.Path == "/slow" {
			b.held.Add(1)
			select {
			case <-b.release:
			case <-time.After(testTimeout):
			}
			b.held.Add(-1)
		}
		if r.ContentLength > 0 {
			io.Copy(io.Discard, r.Body)
		}
		io.WriteString(w, name)
	})}
	go b.srv.Serve(ln)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

// freeAddr returns a loopback address nothing listens on and no other
// call returned.
func freeAddr(t *testing.T) string { return loopback.FreeAddr(t) }

// get makes one request and returns the body, which names the backend.
func get(client *http.Client, url string) (string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

// getOnOneConn sends GET for each of paths, one after the other, on one
// new keep-alive connection to addr, which it then closes, and returns the
// responses (bodies read). It fails the test when a request gets no
// response, as after the connection closed.
func getOnOneConn(t *testing.T, addr string, paths ...string) []*http.Response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(testTimeout))
	br := bufio.NewReader(conn)
	var out []*http.Response
	for i, path := range paths {
		io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: e2e\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d (GET %s) on one connection to %s: %v", i, path, addr, err)
		}
		io.Copy(io.Discard, resp.Body)
		out = append(out, resp)
	}
	return out
}

// tcpGet sends one HTTP request over a new TCP connection with Connection:
// close and returns the body, for TCP listeners in front of HTTP backends.
func tcpGet(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	raw, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	head, body, ok := strings.Cut(string(raw), "\r\n\r\n")
	if !ok || !strings.HasPrefix(head, "HTTP/1.1 200") {
		return "", errors.New("bad response: " + string(raw))
	}
	return body, nil
}
