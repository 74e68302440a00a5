// Package etcdtest starts a real etcd server inside a test process, on
// loopback ports, with its data in the test's temporary directory. Tests of
// the etcd store, leader election, the shared fleet view and the end-to-end
// HA tests use it; nothing else should import it (it links the etcd server).
package etcdtest

import (
	"context"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/sluice-lb/sluice/internal/loopback"
)

// startTimeout bounds the server's start; a single member elects itself in
// well under a second, even on a busy machine.
const startTimeout = 20 * time.Second

// Server is a running single-member etcd.
type Server struct {
	// Endpoint is the client URL, e.g. http://127.0.0.1:23790.
	Endpoint string
	cfg      *embed.Config // how it was started, for Replace and Restore
	mu       sync.Mutex    // guards the fields below
	etcd     *embed.Etcd
	up       bool // etcd runs
	stopped  bool // by Stop: for good
}

// Start starts etcd and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, nil, 0)
}

// TLS is how StartTLS serves clients: PEM files of its certificate and
// key and, when CAFile is set, of the authorities that must sign every
// client's certificate (etcd's --client-cert-auth).
type TLS struct{ CertFile, KeyFile, CAFile string }

// StartTLS starts etcd serving clients over TLS only, at an https://
// Endpoint, and stops it when the test ends. Client does not reach it.
func StartTLS(t testing.TB, c TLS) *Server {
	t.Helper()
	return start(t, &c, 0)
}

// User is an etcd user that StartAuth adds: Name and Password, and a role
// that may read and write every key under Prefix (none when it is empty).
type User struct{ Name, Password, Prefix string }

// StartAuth starts etcd with its authentication on (etcdctl auth enable)
// and users, and stops it when the test ends. A token it gives a client
// lapses once unused for tokenTTL (etcd's --auth-token-ttl, whole
// seconds, at least one). Client does not reach it: it names no user.
func StartAuth(t testing.TB, tokenTTL time.Duration, users ...User) *Server {
	t.Helper()
	s := start(t, nil, max(uint(tokenTTL/time.Second), 1))
	c := s.Client(t)
	ctx := Context(t, startTimeout)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("etcdtest: auth: %v", err)
		}
	}
	// etcd turns authentication on only once a root user exists.
	must(c.UserAdd(ctx, "root", "root"))
	must(c.UserGrantRole(ctx, "root", "root"))
	for _, u := range users {
		must(c.UserAdd(ctx, u.Name, u.Password))
		if u.Prefix == "" {
			continue
		}
		must(c.RoleAdd(ctx, u.Name))
		must(c.RoleGrantPermission(ctx, u.Name, u.Prefix, clientv3.GetPrefixRangeEnd(u.Prefix), clientv3.PermissionType(clientv3.PermReadWrite)))
		must(c.UserGrantRole(ctx, u.Name, u.Name))
	}
	must(c.AuthEnable(ctx))
	return s
}

func start(t testing.TB, c *TLS, tokenTTL uint) *Server {
	t.Helper()
	cfg := embed.NewConfig()
	if tokenTTL > 0 {
		cfg.AuthTokenTTL = tokenTTL
	}
	cfg.Name = "sluice-test"
	cfg.Dir = t.TempDir()
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	scheme := "http://"
	if c != nil {
		scheme = "https://"
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile, TrustedCAFile: c.CAFile, ClientCertAuth: c.CAFile != ""}
	}
	client := mustURL(t, scheme+loopback.FreeAddr(t))
	peer := mustURL(t, "http://"+loopback.FreeAddr(t))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	srv := &Server{cfg: cfg, etcd: run(t, cfg), up: true}
	t.Cleanup(srv.Stop)
	srv.Endpoint = client.String()
	return srv
}

// run starts etcd as cfg says and waits until it serves.
func run(t testing.TB, cfg *embed.Config) *embed.Etcd {
	t.Helper()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("etcdtest: start: %v", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		t.Fatalf("etcdtest: %v", err)
	case <-time.After(startTimeout):
		e.Close()
		t.Fatalf("etcdtest: not ready after %v", startTimeout)
	}
	return e
}

// Stop stops the server before the test ends: its clients then get no
// answer.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	s.down()
}

// down stops etcd if it runs; s.mu is held.
func (s *Server) down() {
	if s.up {
		s.up = false
		s.etcd.Close()
	}
}

// Replace stops the server and starts an empty one in its place, at the
// same addresses, as an operator who lost etcd's disks and set up a new
// one would: its revisions, and every key, start afresh. Clients keep
// their connections' addresses and reach the new server.
func (s *Server) Replace(t testing.TB) {
	t.Helper()
	s.swap(t, t.TempDir())
}

// Backup copies the server's data as it is now, stopping it for the copy
// and starting it again on its own data, and returns where the copy is,
// for Restore.
func (s *Server) Backup(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	s.mu.Lock()
	s.down()
	err := os.CopyFS(dir, os.DirFS(s.cfg.Dir))
	s.mu.Unlock()
	if err != nil {
		t.Fatalf("etcdtest: backup: %v", err)
	}
	s.swap(t, s.cfg.Dir)
	return dir
}

// Restore stops the server and starts it in its place on the data of an
// earlier Backup: its keys and revisions go back to what they were then.
func (s *Server) Restore(t testing.TB, backup string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(backup)); err != nil {
		t.Fatalf("etcdtest: restore: %v", err)
	}
	s.swap(t, dir)
}

// swap stops the server (if it runs) and starts it again at the same
// addresses on the data in dir.
func (s *Server) swap(t testing.TB, dir string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		t.Fatal("etcdtest: the server was stopped")
	}
	s.down()
	s.cfg.Dir = dir
	s.etcd, s.up = run(t, s.cfg), true
}

// Client returns a client of s, closed when the test ends.
func (s *Server) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	return client(t, s.Endpoint)
}

// RelayedClient returns a client of s whose connections go through a
// loopback.Relay, which the test may cut or silence to stand for a
// partition or a dead host; closed when the test ends. Not for StartTLS.
func (s *Server) RelayedClient(t testing.TB) (*clientv3.Client, *loopback.Relay) {
	t.Helper()
	r := loopback.NewRelay(t, strings.TrimPrefix(s.Endpoint, "http://"))
	return client(t, "http://"+r.Addr), r
}

func client(t testing.TB, endpoint string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		// As sluice-cp's client (controlplane.etcdConnectParams): back
		// within seconds of a Replace or Restore, not gRPC's minutes.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		})},
	})
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Context returns a context that ends when the test does or after d.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustURL(t testing.TB, s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return *u
}
