// Package controlplane assembles sluice-cp: the snapshot store, the discovery
// server that streams snapshots to dataplane nodes, the fleet registry, the
// stats receiver, the command channel to nodes and the operators' config
// API, on one gRPC listener, plus an HTTP listener for the dashboard, its
// JSON API (/api/), /healthz and /metrics.
//
// A program (cmd/sluice-cp, or a test that wants a control plane in-process)
// calls New, which opens the store and binds the listeners, then Serve on one
// goroutine until its context ends:
//
//	cp, err := controlplane.New(controlplane.Options{Listen: "127.0.0.1:0", DataDir: dir})
//	if err != nil { ... }
//	go cp.Serve(ctx)          // returns once everything is stopped and the store closed
//	conn, _ := grpc.NewClient(cp.Addr().String(), ...)
package controlplane

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/sluice-lb/sluice/controlplane/auth"
	"github.com/sluice-lb/sluice/controlplane/cmdrelay"
	"github.com/sluice-lb/sluice/controlplane/command"
	"github.com/sluice-lb/sluice/controlplane/configapi"
	"github.com/sluice-lb/sluice/controlplane/dashboard"
	"github.com/sluice-lb/sluice/controlplane/discovery"
	"github.com/sluice-lb/sluice/controlplane/fleet"
	"github.com/sluice-lb/sluice/controlplane/fleetview"
	"github.com/sluice-lb/sluice/controlplane/history"
	"github.com/sluice-lb/sluice/controlplane/httpapi"
	"github.com/sluice-lb/sluice/controlplane/leader"
	"github.com/sluice-lb/sluice/controlplane/metrics"
	"github.com/sluice-lb/sluice/controlplane/stats"
	"github.com/sluice-lb/sluice/controlplane/store"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// With etcd the fleet view lists every replica's nodes, and tells
// shutdown-sessions when it cannot.
var _ configapi.FleetLister = (*fleetview.View)(nil)

// Defaults of Options and of sluice-cp's flags.
const (
	DefaultListen        = "127.0.0.1:7070"
	DefaultHTTP          = "127.0.0.1:7071"
	DefaultDataDir       = "./sluice-data"
	DefaultShutdownGrace = 5 * time.Second
)

// MaxMessageSize is the largest gRPC message the control plane accepts. A
// snapshot of 10k clusters and 100k endpoints is several MiB, more than gRPC's
// default 4 MiB, so clients (sluice-dp, sluicectl) need a matching
// grpc.MaxCallRecvMsgSize to receive one.
const MaxMessageSize = 64 << 20

// Keepalive of the long-lived node streams.
const (
	// keepaliveMinTime is the shortest client ping interval tolerated; a
	// client pinging more often is disconnected with ENHANCE_YOUR_CALM, so
	// sluice-dp's keepalive.ClientParameters.Time (10 s, gRPC's least)
	// must be at least this, with room for the pings' jitter.
	keepaliveMinTime = 5 * time.Second
	// The server pings a connection silent for keepaliveTime and drops it
	// when the ping is not answered within keepaliveTimeout, so a node that
	// vanished (power loss, partition) shows as disconnected within 15 s,
	// and stops holding up apply --wait.
	keepaliveTime    = 10 * time.Second
	keepaliveTimeout = 5 * time.Second
)

// RolloutCheckInterval is how often staged rollouts are checked: how soon
// a canary's NACK halts one, and the granularity of its window.
const RolloutCheckInterval = 500 * time.Millisecond

// Options configure a control plane.
type Options struct {
	// Listen is the gRPC address (discovery, stats, commands, config API,
	// health, reflection). Empty: 127.0.0.1 on a free port.
	Listen string
	// HTTP is the address of the dashboard (/), its JSON API (/api/),
	// /healthz and /metrics. Empty: no HTTP listener.
	HTTP string
	// DataDir holds the embedded store (DataDir/sluice.db). Required unless
	// Store or Etcd is set.
	DataDir string
	// Etcd, when set, makes this control plane one of several replicas
	// sharing one etcd cluster at these endpoints: snapshots and their
	// history live in etcd (store.Etcd) instead of DataDir, every replica
	// lists every replica's nodes (package fleetview), and singleton work
	// runs on an elected leader (package leader). etcd must be reachable
	// when New is called.
	Etcd []string
	// EtcdTLS, when set, is the TLS of the connections to etcd (its
	// https:// endpoints): the authorities etcd's certificate is verified
	// against, and the replica's client certificate if etcd asks for one.
	EtcdTLS *tls.Config
	// EtcdUser and EtcdPassword, when set, are the etcd user the replica
	// authenticates as, for an etcd with authentication on. The user's
	// role needs readwrite on EtcdPrefix: every key of the replicas lives
	// under it.
	EtcdUser, EtcdPassword string
	// EtcdPrefix is where the replicas' keys live in etcd; replicas that
	// share it share a configuration. Empty: store.DefaultEtcdPrefix.
	EtcdPrefix string
	// Replica names this replica among those on one etcd; it must be
	// unique among them. Empty: the host name and port of Listen (the
	// address itself when it is a specific one, such as 127.0.0.1:7070).
	Replica string
	// EtcdLeaseTTL is how long a replica that died or lost etcd is still
	// counted: its nodes listed as it left them, its leadership held.
	// 0: fleetview.DefaultTTL for nodes and leader.DefaultTTL for
	// leadership.
	EtcdLeaseTTL time.Duration
	// Store, when set, is used instead of the embedded store in DataDir.
	// The server closes it when Serve returns.
	Store store.Store
	// KeepVersions is how many snapshot versions the embedded store keeps
	// for history, get --version and rollback; older ones are deleted. 0:
	// store.DefaultRetain.
	KeepVersions int
	// ConnsRing is how many connection records are kept for ListConns.
	// 0: stats.DefaultRingSize.
	ConnsRing int
	// ForgetNodesAfter is how long a disconnected node stays listed (nodes,
	// stats, the dashboard) before it is forgotten. 0:
	// DefaultForgetNodesAfter; negative: never.
	ForgetNodesAfter time.Duration
	// HistorySeries bounds the series of per-second history kept for the
	// dashboard (see package history). 0: history.DefaultMaxSeries.
	HistorySeries int
	// ShutdownGrace bounds how long Serve waits, once its context ends, for
	// config API calls in flight. 0: DefaultShutdownGrace.
	ShutdownGrace time.Duration
	// Insecure lets Listen and HTTP be addresses other than loopback ones.
	// Without TLS and tokens (Security), whoever reaches these addresses
	// can change the fleet's configuration; so unless Insecure is set or
	// Security has both, New refuses any address that is not loopback.
	Insecure bool
	// Security, when set, is TLS for nodes and the dashboard, tokens and
	// roles for operators, and the audit log (see package auth). nil: none
	// of them.
	Security *auth.Guard
	// Logger receives the control plane's log (nil: none).
	Logger *slog.Logger
}

// Server is a control plane with its listeners bound.
type Server struct {
	opts Options
	log  *slog.Logger

	store     store.Store
	etcd      *clientv3.Client // nil with the embedded store
	replica   string
	holder    string          // where and what this replica is, for others and ListReplicas
	view      *fleetview.View // nil with the embedded store
	relay     *cmdrelay.Relay // nil with the embedded store
	fleet     *fleet.Registry
	discovery *discovery.Server
	config    *configapi.Server
	metrics   *metrics.Metrics
	stats     *stats.Server
	history   *history.Recorder
	commands  *command.Registry
	health    *health.Server
	grpc      *grpc.Server
	lis       net.Listener
	http      *http.Server
	httpLis   net.Listener
	unary     inflight

	serveOnce sync.Once
	closeOnce sync.Once
	closeErr  error
}

// New opens the store and binds the listeners. The caller then calls Serve,
// or Close if it never does.
func New(opts Options) (_ *Server, err error) {
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = DefaultShutdownGrace
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: log, store: opts.Store}
	defer func() {
		if err != nil {
			s.closeListeners()
			if opts.Store == nil && s.store != nil {
				s.store.Close()
			}
			if s.etcd != nil {
				s.etcd.Close()
			}
		}
	}()

	if s.store == nil && len(opts.Etcd) == 0 && opts.DataDir == "" {
		return nil, errors.New("controlplane: no data directory")
	}
	open := opts.Insecure || opts.Security.Secure()
	if s.lis, err = listen("--listen", opts.Listen, open); err != nil {
		return nil, err
	}
	if opts.HTTP != "" {
		if s.httpLis, err = listen("--http", opts.HTTP, open); err != nil {
			return nil, err
		}
		if cfg := opts.Security.HTTPTLS(); cfg != nil {
			s.httpLis = tls.NewListener(s.httpLis, cfg)
		}
	}
	// After listening: an address refused leaves no store behind, and a
	// replica is named after its address.
	switch {
	case s.store == nil && len(opts.Etcd) == 0:
		b, err := store.OpenBolt(opts.DataDir, store.BoltOptions{Retain: opts.KeepVersions})
		if err != nil {
			return nil, err
		}
		s.store = b
	case s.store == nil:
		if err := s.openEtcd(); err != nil {
			return nil, err
		}
	}

	s.fleet = fleet.NewRegistry()
	var nodes configapi.NodeLister = s.fleet
	host, _ := os.Hostname()
	s.holder = fmt.Sprintf("listening on %s, pid %d on %s, since %s",
		s.lis.Addr(), os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	if s.etcd != nil {
		s.view, err = fleetview.New(s.etcd, s.fleet, fleetview.Options{
			Prefix:   s.etcdPrefix(),
			Replica:  s.replica,
			TTL:      opts.EtcdLeaseTTL,
			Holder:   s.holder,
			Seat:     seat(s.lis.Addr()),
			Settings: opts.Security.Settings(),
			Logger:   log.With("component", "fleetview"),
		})
		if err != nil {
			return nil, err
		}
		nodes = s.view
	}
	var certExpiry func() time.Time
	if opts.Security.ServingCertificate() != nil {
		certExpiry = func() time.Time { return opts.Security.ServingCertificate().NotAfter }
	}
	s.metrics = metrics.New(metrics.Sources{
		Nodes: func() (connected, current int) {
			// Versions are numbered across groups, so each group's
			// version is run only by nodes of that group.
			_, connected = s.fleet.Count(0)
			for _, v := range s.discovery.GroupVersions() {
				applied, _ := s.fleet.Count(v)
				current += applied
			}
			return connected, current
		},
		Version: func() uint64 { return s.discovery.Version() },
		Records: func() (received, dropped uint64) {
			c := s.stats.Counters()
			return c.Received, c.Dropped
		},
		CertificateExpiry: certExpiry,
	})
	s.discovery = discovery.New(s.fleet, s.metrics, log.With("component", "discovery")).KeepRefusals(s.store)
	if s.etcd != nil {
		s.discovery.HoldWhenBehind(discovery.LagWait, s.store)
	}
	s.history = history.New(opts.HistorySeries)
	s.stats = stats.NewServer(stats.NewRing(opts.ConnsRing), s.fleet, log.With("component", "stats")).
		WithObserver(s.history)
	s.commands = command.NewRegistry(log.With("component", "command"))
	config := configapi.New(s.store, nodes, s.stats.Ring(), log.With("component", "config")).
		WithFleet(s.stats.Views(), s.commands).
		WithReplica(s.replica).
		WithReplicas(s).
		WithNodeCertificates(opts.Security.ServingCertificate() != nil).
		WithPublished(s.discovery.Config)
	if s.etcd != nil {
		// Commands reach the nodes on other replicas through them.
		s.relay, err = cmdrelay.New(s.etcd, s.commands, cmdrelay.Options{
			Prefix:  s.etcdPrefix(),
			Replica: s.replica,
			Logger:  log.With("component", "cmdrelay"),
		})
		if err != nil {
			return nil, err
		}
		config.WithRelay(s.relay)
		// Last, as nothing after it fails: a name claimed is given up
		// by Serve, or by Close.
		if err := s.view.Claim(context.Background()); err != nil {
			if errors.Is(err, fleetview.ErrNameTaken) {
				err = fmt.Errorf("%w; give each replica its own name (--replica)", err)
			}
			return nil, fmt.Errorf("controlplane: %w", err)
		}
	}
	s.config = config

	// The config API's calls from gRPC (sluicectl) and from HTTP (the
	// dashboard) go through the same interceptors: an auth check added
	// here applies to both.
	interceptors := append([]grpc.UnaryServerInterceptor{s.unary.interceptor}, opts.Security.UnaryInterceptors()...)
	s.grpc = grpc.NewServer(append(opts.Security.ServerOptions(),
		discovery.ServerOption(),
		grpc.MaxRecvMsgSize(MaxMessageSize),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             keepaliveMinTime,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    keepaliveTime,
			Timeout: keepaliveTimeout,
		}),
		grpc.ChainUnaryInterceptor(interceptors...),
	)...)
	sluicev1.RegisterDiscoveryServiceServer(s.grpc, s.discovery)
	sluicev1.RegisterStatsServiceServer(s.grpc, s.stats)
	sluicev1.RegisterCommandServiceServer(s.grpc, s.commands)
	sluicev1.RegisterConfigServiceServer(s.grpc, config)
	sluicev1.RegisterAuthServiceServer(s.grpc, auth.NewService(opts.Security))
	sluicev1.RegisterNodeCertServiceServer(s.grpc, auth.NewNodeCertService(opts.Security))
	opts.Security.ReadRevokedFrom(func(ctx context.Context) ([]*sluicev1.RevokedNode, error) {
		v, err := s.store.Current(ctx)
		if err != nil {
			return nil, err
		}
		return v.Config.GetRevokedNodes(), nil
	})
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	for _, name := range []string{
		sluicev1.DiscoveryService_ServiceDesc.ServiceName,
		sluicev1.StatsService_ServiceDesc.ServiceName,
		sluicev1.CommandService_ServiceDesc.ServiceName,
		sluicev1.ConfigService_ServiceDesc.ServiceName,
		sluicev1.AuthService_ServiceDesc.ServiceName,
	} {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	reflection.Register(s.grpc)

	if s.httpLis != nil {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Write([]byte("ok"))
		})
		mux.Handle("GET /metrics", s.metrics.Handler())
		mux.Handle("/api/", httpapi.New(config, s.history, interceptors...).WithPublished(s.discovery.Config).Handler())
		mux.Handle("/", dashboard.Handler())
		s.http = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
	}
	return s, nil
}

// listen binds addr, which the flag named flagName gave, and refuses an
// address that is not loopback unless insecure: it is the address that
// was bound that counts, so "0.0.0.0:7070" or a host name that resolves
// to a public address is caught as surely as "10.0.0.5:7070".
func listen(flagName, addr string, insecure bool) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("controlplane: %s: %w", flagName, err)
	}
	if tcp, ok := lis.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() && !insecure {
		lis.Close()
		return nil, fmt.Errorf("controlplane: %s %s is not a loopback address, and the control plane is not secured "+
			"(TLS: --tls-cert, --tls-key, --ca-cert; tokens: --token-key): anyone who reaches it could change the fleet's configuration. "+
			"Secure it, or pass --insecure to serve it there anyway (on a trusted network only)", flagName, addr)
	}
	return lis, nil
}

// Addr returns the gRPC listener's address.
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// HTTPAddr returns the HTTP listener's address, or nil without one.
func (s *Server) HTTPAddr() net.Addr {
	if s.httpLis == nil {
		return nil
	}
	return s.httpLis.Addr()
}

// Store returns the control plane's store.
func (s *Server) Store() store.Store { return s.store }

// Fleet returns the registry of the nodes this control plane serves.
func (s *Server) Fleet() *fleet.Registry { return s.fleet }

// Replica returns this replica's name among those sharing an etcd, or ""
// with the embedded store.
func (s *Server) Replica() string { return s.replica }

// Elector returns the election for the singleton work called name
// ("prune", "rollout"): with etcd, one replica at a time runs it; with the
// embedded store this control plane always does.
func (s *Server) Elector(name string) leader.Elector {
	if s.etcd == nil {
		return leader.Always{}
	}
	return leader.NewEtcd(s.etcd, leader.EtcdOptions{
		Prefix: s.etcdPrefix(),
		Name:   name,
		ID:     s.replica,
		TTL:    s.opts.EtcdLeaseTTL,
		Logger: s.log.With("component", "leader"),
	})
}

func (s *Server) etcdPrefix() string {
	if s.opts.EtcdPrefix == "" {
		return store.DefaultEtcdPrefix
	}
	return s.opts.EtcdPrefix
}

// etcdConnectParams is how a replica's etcd client connects again after
// losing etcd: after 250 ms, then at most 3 s apart.
var etcdConnectParams = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
	MinConnectTimeout: 5 * time.Second,
}

// openEtcd connects to etcd and opens the replicated store on it.
func (s *Server) openEtcd() error {
	s.replica = s.opts.Replica
	if s.replica == "" {
		s.replica = replicaName(s.lis.Addr())
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints: s.opts.Etcd,
		TLS:       s.opts.EtcdTLS,
		Username:  s.opts.EtcdUser,
		Password:  s.opts.EtcdPassword,
		// With a user, New waits this long for etcd to authenticate it.
		DialTimeout: etcdDialTimeout,
		Logger:      zap.NewNop(),
		// etcd's --max-request-bytes, not the client, should bound what
		// a version may weigh.
		MaxCallSendMsgSize: MaxMessageSize,
		// Fail over to another etcd endpoint when this one is cut off.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		// Reach etcd again within seconds of its return, however long it
		// was away: gRPC's own backoff grows to 2 minutes between tries.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(etcdConnectParams)},
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = s.explainUnanswered(store.EtcdUnanswered(s.opts.Etcd, etcdDialTimeout))
		}
		return fmt.Errorf("controlplane: cannot connect to etcd: %w", s.explainAuth(err))
	}
	s.etcd = client
	// The first contact waits as long as any call of the store
	// (store.DefaultEtcdTimeout).
	st, err := store.OpenEtcd(context.Background(), client, store.EtcdOptions{
		Prefix: s.etcdPrefix(),
		Retain: s.opts.KeepVersions,
		Logger: s.log.With("component", "store"),
	})
	if err != nil {
		if errors.Is(err, store.ErrUnavailable) {
			err = s.explainUnanswered(err)
		}
		return fmt.Errorf("controlplane: cannot open the store on etcd: %w", s.explainAuth(err))
	}
	s.store = st
	s.log.Info("replica on etcd", "replica", s.replica, "etcd", s.opts.Etcd, "prefix", s.etcdPrefix())
	return nil
}

// etcdDialTimeout bounds the etcd client's first contact.
const etcdDialTimeout = 5 * time.Second

// explainUnanswered adds to err, etcd's silence at start, what a
// connection of the replica's own finds wrong (probeEtcd).
func (s *Server) explainUnanswered(err error) error {
	if why := probeEtcd(s.opts.Etcd, s.opts.EtcdTLS); why != "" {
		return fmt.Errorf("%w (%s)", err, why)
	}
	return err
}

// explainAuth adds to err, etcd's refusal at start, which setting it
// refused, where etcd's words alone do not say.
func (s *Server) explainAuth(err error) error {
	switch {
	case errors.Is(err, rpctypes.ErrUserEmpty):
		return fmt.Errorf("%w (etcd's authentication is on: give --etcd-user and --etcd-password-file, or a client certificate whose common name is an etcd user)", err)
	case errors.Is(err, rpctypes.ErrAuthFailed):
		return fmt.Errorf("%w (etcd refused user %q with the password of --etcd-password-file)", err, s.opts.EtcdUser)
	}
	return err
}

// seat says where a replica listening on addr runs, such that no two live
// replicas share it (fleetview.Options.Seat): this boot of the machine,
// the network namespace, and addr, which the listener holds. Empty where
// /proc does not tell the first two.
func seat(addr net.Addr) string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	netns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(boot)) + " " + netns + " " + addr.String()
}

// replicaName is the default name of the replica listening on addr.
func replicaName(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return addr.String()
	}
	host, err := os.Hostname()
	if err != nil {
		return addr.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}

// pruner is a store whose old versions are deleted by singleton work rather
// than by Put (store.Etcd).
type pruner interface {
	Prune(ctx context.Context) error
}

// prune deletes versions that fell out of the retention window each time
// a new version is stored, while this replica leads.
func (s *Server) prune(ctx context.Context, p pruner) {
	for range s.store.Watch(ctx) {
		if err := p.Prune(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("cannot prune old versions", "err", err)
		}
	}
}

// Serve serves until ctx ends, then stops: node streams end with UNAVAILABLE
// (nodes keep their config and reconnect), config API calls in flight get up
// to ShutdownGrace to finish, and the store is closed. It returns nil after a
// stop caused by ctx, or the error that stopped it early. Serve may be
// called once.
func (s *Server) Serve(ctx context.Context) error {
	err := errors.New("controlplane: Serve called twice")
	s.serveOnce.Do(func() { err = s.serve(ctx) })
	return err
}

func (s *Server) serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		fail error
	)
	failed := func(err error) {
		mu.Lock()
		if fail == nil {
			fail = err
		}
		mu.Unlock()
		cancel()
	}
	wg.Go(func() {
		if err := s.discovery.Run(ctx, s.store); err != nil && ctx.Err() == nil {
			failed(err)
		}
	})
	// Staged rollouts are watched by every replica, each judging the
	// canaries' ACKs (from the whole fleet: the fleet view with etcd) and
	// the traffic of the canaries that report to it: any replica halts a
	// rollout, the elected one promotes it.
	var leading atomic.Bool
	wg.Go(func() { s.config.RunRollouts(ctx, RolloutCheckInterval, leading.Load) })
	if s.opts.Security.ServingCertificate() != nil {
		wg.Go(func() { s.watchCertificate(ctx) })
		wg.Go(func() { s.watchRevoked(ctx) })
	}
	if s.view != nil {
		wg.Go(func() { s.watchAgreement(ctx, agreementCheck) })
	}
	wg.Go(func() {
		s.Elector("rollout").Run(ctx, func(ctx context.Context) {
			leading.Store(true)
			<-ctx.Done()
			leading.Store(false)
		})
	})
	wg.Go(func() {
		// ErrServerStopped: stop ran before this goroutine got to Serve
		// (a SIGTERM right after the start), which is no failure.
		if err := s.grpc.Serve(s.lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			failed(fmt.Errorf("controlplane: grpc: %w", err))
		}
	})
	if s.view != nil {
		wg.Go(func() { s.view.Run(ctx) })
		wg.Go(func() { s.relay.Run(ctx) })
	}
	if p, ok := s.store.(pruner); ok {
		wg.Go(func() { s.Elector("prune").Run(ctx, func(ctx context.Context) { s.prune(ctx, p) }) })
	}
	if s.opts.ForgetNodesAfter >= 0 {
		wg.Go(func() { s.forgetNodes(ctx) })
	}
	attrs := []any{"grpc", s.Addr().String()}
	if s.http != nil {
		attrs = append(attrs, "http", s.HTTPAddr().String())
		wg.Go(func() {
			if err := s.http.Serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				failed(fmt.Errorf("controlplane: http: %w", err))
			}
		})
	}
	s.log.Info("listening", attrs...)

	<-ctx.Done()
	s.log.Info("stopping")
	s.stop()
	s.wait(&wg)
	if err := s.Close(); err != nil && fail == nil {
		fail = err
	}
	return fail
}

// DefaultForgetNodesAfter is how long a disconnected node stays listed,
// by default: a day, to see in the morning which node went away overnight,
// while a fleet whose nodes come and go under new ids does not list every
// node it ever had.
const DefaultForgetNodesAfter = 24 * time.Hour

// forgetNodes forgets, until ctx ends, the nodes disconnected for longer
// than Options.ForgetNodesAfter (each replica those it served): their
// entries, their records on etcd and their last endpoint views.
func (s *Server) forgetNodes(ctx context.Context) {
	after := cmp.Or(s.opts.ForgetNodesAfter, DefaultForgetNodesAfter)
	t := time.NewTicker(max(min(after/4, time.Minute), 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		checked := time.Now()
		if gone := s.fleet.Forget(checked.Add(-after)); len(gone) > 0 {
			s.stats.Views().Drop(checked, gone...)
			s.log.Info("forgot nodes disconnected for longer than --forget-nodes-after", "nodes", gone, "after", after)
		}
	}
}

// wait waits for the work of serve to end. With etcd, that work says
// goodbye to it (its leases revoked, its elections resigned), and etcd's
// election resigns a cancelled campaign with the client's own context,
// which never ends while etcd is away: after the store's bound on an etcd
// call, the client is closed, which ends every call still waiting.
func (s *Server) wait(wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	if s.etcd == nil {
		<-done
		return
	}
	t := time.NewTimer(store.DefaultEtcdTimeout)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	s.log.Warn("etcd did not answer this replica's goodbye; stopping without it", "waited", store.DefaultEtcdTimeout, "etcd", s.opts.Etcd)
	s.etcd.Close()
	<-done
}

// stop ends serving: refuse new work, end node streams (discovery and
// commands), let config calls finish, then cut what is left (stats streams, which end only when nodes
// close them, and whose in-flight batches are worth nothing after a stop),
// and write the refusals still queued.
func (s *Server) stop() {
	s.health.Shutdown()
	s.discovery.Close()
	s.commands.Close()
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	grace := time.NewTimer(s.opts.ShutdownGrace)
	defer grace.Stop()
	select {
	case <-stopped:
	case <-s.unary.idle():
	case <-grace.C:
	}
	s.grpc.Stop()
	<-stopped
	// The NACKs that came while the streams ended are still to be kept,
	// before Close closes the store.
	flush, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownGrace)
	s.discovery.FlushRefusals(flush)
	cancel()
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownGrace)
		defer cancel()
		if err := s.http.Shutdown(ctx); err != nil {
			s.http.Close()
		}
	}
}

// Close releases the listeners and the store. Serve calls it on its way out;
// call it directly only for a Server whose Serve never ran.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closeListeners()
		s.grpc.Stop()
		if s.http != nil {
			s.http.Close()
		}
		if s.view != nil {
			s.view.Close()
		}
		s.closeErr = s.store.Close()
		if s.etcd != nil {
			s.etcd.Close()
		}
	})
	return s.closeErr
}

func (s *Server) closeListeners() {
	if s.lis != nil {
		s.lis.Close()
	}
	if s.httpLis != nil {
		s.httpLis.Close()
	}
}

// inflight counts unary calls in progress, so a stop can wait for config API
// calls without waiting for streams that never end by themselves.
type inflight struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed while n == 0; nil means "not yet made"
}

func (f *inflight) interceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	f.mu.Lock()
	if f.n == 0 {
		f.zero = make(chan struct{})
	}
	f.n++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.n--
		if f.n == 0 {
			close(f.zero)
		}
		f.mu.Unlock()
	}()
	return h(ctx, req)
}

// idle returns a channel closed when no unary call is in progress.
func (f *inflight) idle() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return f.zero
}
