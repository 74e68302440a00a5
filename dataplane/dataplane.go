// Package dataplane assembles a Sluice node: the runtime that proxies
// traffic (package node), its subscription to the control plane (package
// discovery), the stats reporter, the command stream (package command) and
// the admin endpoint. cmd/sluice-dp and
// the end-to-end tests start nodes through Start.
package dataplane

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sluice-lb/sluice/dataplane/accesslog"
	"github.com/sluice-lb/sluice/dataplane/admin"
	"github.com/sluice-lb/sluice/dataplane/command"
	"github.com/sluice-lb/sluice/dataplane/discovery"
	"github.com/sluice-lb/sluice/dataplane/node"
	"github.com/sluice-lb/sluice/dataplane/stats"
	"github.com/sluice-lb/sluice/internal/reconnect"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
)

// maxSnapshotSize is the largest snapshot message a node accepts; the
// control plane sends up to the same size (controlplane.MaxMessageSize).
const maxSnapshotSize = 64 << 20

// Options configure a node.
type Options struct {
	// ControlPlane is the control plane's gRPC address, or the addresses of
	// several replicas of it, comma-separated ("a:7070,b:7070"): the node
	// uses the first that serves it and moves to the next when that one
	// goes away (see controlPlanes).
	ControlPlane string
	// TLS, when set, is how the node dials the control plane: the CA it
	// verifies the control plane with and the node's client certificate
	// (pki.ClientTLS). nil: plain gRPC.
	TLS *tls.Config
	// Node identifies the node; its id must be unique in the fleet.
	Node *sluicev1.Node
	// AdminAddr is where /healthz, /readyz and /status are served; empty
	// disables the admin endpoint.
	AdminAddr string
	// AdminAuth, when set, asks for a user and password on the admin
	// address for everything but /healthz and /readyz.
	AdminAuth *admin.Credentials
	Logger    *slog.Logger
	// AccessLog, when set, gets the access log: one JSON line per HTTP
	// request and TCP session (package accesslog), of which
	// AccessLogSample, in (0, 1], are logged (0: all).
	AccessLog       io.Writer
	AccessLogSample float64
	// MaxConnections caps the client connections the node holds at once
	// over all its listeners (node.Options.MaxConnections); 0: no cap.
	MaxConnections int
	// ListenerGrace is how long the connections of a removed listener
	// have to end (node.Options.ListenerGrace).
	ListenerGrace time.Duration
	// MinBackoff and MaxBackoff bound reconnect waits (see discovery.Client
	// and command.Client).
	MinBackoff, MaxBackoff time.Duration
	// CertFile and KeyFile are the files of the node certificate TLS
	// presents. With RenewCert, the node renews it through the control
	// plane once two thirds of its life has passed, writing the new one
	// over them (see certRenewer).
	CertFile, KeyFile string
	RenewCert         bool
}

// Dataplane is a running node.
type Dataplane struct {
	Node     *node.Node
	Reporter *stats.Reporter

	conn     *controlPlanes
	client   *discovery.Client
	commands *command.Client
	log      *accesslog.Log // nil without an access log
	logger   *slog.Logger
	admin    *http.Server
	adminL   net.Listener
	cancel   context.CancelFunc // ends the subscription and the command stream
	stopReps context.CancelFunc // ends the stats reporter
	wg       sync.WaitGroup
}

// Start validates opts, opens the admin endpoint and starts subscribing in
// the background. The node serves nothing until its first snapshot arrives.
func Start(opts Options) (*Dataplane, error) {
	if err := opts.Node.Validate(); err != nil {
		return nil, fmt.Errorf("dataplane: node: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	creds := insecure.NewCredentials()
	if opts.TLS != nil {
		creds = credentials.NewTLS(opts.TLS)
	}
	dial := func(addr string) (*grpc.ClientConn, error) { return dialControlPlane(addr, creds) }
	addrs, err := splitControlPlanes(opts.ControlPlane)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs { // refuse a malformed address now, not at first use
		c, err := dial(a)
		if err != nil {
			return nil, fmt.Errorf("dataplane: control plane %s: %w", a, err)
		}
		c.Close()
	}
	conn := &controlPlanes{addrs: addrs, dial: dial, log: log}
	self := proto.CloneOf(opts.Node)
	if self.GetInstance() == "" {
		self.Instance = newInstance()
	}
	d := &Dataplane{conn: conn, Reporter: stats.NewReporter(stats.DefaultQueue, log), logger: log}
	nopts := node.Options{OnConn: d.Reporter.Record, Logger: log, MaxConnections: opts.MaxConnections, ListenerGrace: opts.ListenerGrace}
	if opts.AccessLog != nil {
		if d.log, err = accesslog.New(opts.AccessLog, accesslog.Options{Node: opts.Node.GetId(), Sample: opts.AccessLogSample}); err != nil {
			conn.Close()
			return nil, fmt.Errorf("dataplane: access log: %w", err)
		}
		nopts.AccessLog = d.log
	}
	d.Node = node.New(nopts)
	d.Reporter.ReportEndpoints(d.Node)
	d.Reporter.SetInstance(self.GetInstance())
	d.client = &discovery.Client{Conn: conn, Node: self, Applier: d.Node, Logger: log, MinBackoff: opts.MinBackoff, MaxBackoff: opts.MaxBackoff}

	if opts.AdminAddr != "" {
		ln, err := net.Listen("tcp", opts.AdminAddr)
		if err != nil {
			conn.Close()
			d.Node.Close()
			if d.log != nil {
				d.log.Close()
			}
			return nil, fmt.Errorf("dataplane: --admin: %w", err)
		}
		d.adminL = ln
		cp := func() discovery.Status { s := d.client.Status(); s.Address = conn.Addr(); return s }
		h := admin.Handler(opts.Node.GetId(), d.Node, d.Reporter.Dropped, cp, d.client.Collector())
		if opts.AdminAuth != nil {
			h = opts.AdminAuth.Protect(h)
		} else {
			h = admin.Guard(h, ln.Addr())
		}
		d.admin = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if err := d.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin server failed", "err", err)
			}
		}()
	}

	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.commands = &command.Client{Conn: conn, NodeID: opts.Node.GetId(), Node: d.Node, Logger: log, MinBackoff: opts.MinBackoff, MaxBackoff: opts.MaxBackoff}
	if opts.RenewCert && opts.TLS != nil && opts.CertFile != "" && opts.KeyFile != "" {
		r := &certRenewer{client: sluicev1.NewNodeCertServiceClient(conn), certFile: opts.CertFile, keyFile: opts.KeyFile,
			log: log, now: time.Now, sleep: reconnect.Sleep}
		d.wg.Add(1)
		go func() { defer d.wg.Done(); r.run(ctx) }()
	}
	d.wg.Add(3)
	go func() { defer d.wg.Done(); d.client.Run(ctx) }()
	repCtx, stopReps := context.WithCancel(context.Background())
	d.stopReps = stopReps
	go func() { defer d.wg.Done(); d.Reporter.Run(repCtx, conn, opts.Node.GetId()) }()
	go func() { defer d.wg.Done(); d.commands.Run(ctx) }()
	return d, nil
}

// The node pings its control plane when it has heard nothing from it for
// cpKeepaliveTime (gRPC's least), and moves to the next replica when the
// ping is not answered within cpKeepaliveTimeout: a replica that stopped
// answering without closing its connections (a frozen process or VM, a
// host cut off) is left within 15 s. That is well within the lease of the
// replica's fleet records (fleetview.DefaultTTL), so the other replicas
// list the node, as it was, until it has moved to one of them.
const (
	cpKeepaliveTime    = 10 * time.Second
	cpKeepaliveTimeout = 5 * time.Second
)

// dialControlPlane returns a connection to one control plane; it connects
// when first used.
func dialControlPlane(addr string, creds credentials.TransportCredentials) (*grpc.ClientConn, error) {
	// gRPC redials on its own backoff, up to 120s by default, and fails
	// the streams' calls at once meanwhile: held to the streams' own
	// ceiling, a node is back within seconds of its control plane's
	// restart, however long it was away.
	bo := backoff.DefaultConfig
	bo.MaxDelay = reconnect.DefaultMax
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxSnapshotSize)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: cpKeepaliveTime, Timeout: cpKeepaliveTimeout}),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: 20 * time.Second}),
	)
}

// ControlPlane returns the address of the control plane the node uses now.
func (d *Dataplane) ControlPlane() string { return d.conn.Addr() }

// newInstance returns a random id for this run of the process.
func newInstance() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// AdminAddr is the address the admin endpoint listens on, nil without one.
func (d *Dataplane) AdminAddr() net.Addr {
	if d.adminL == nil {
		return nil
	}
	return d.adminL.Addr()
}

// Drain takes the node out of service gracefully: it tells the control
// plane it is draining, stops accepting connections and waits, until ctx
// ends, for the connections it has to finish (see node.Node.Drain). Close
// follows it.
//
// The node's subscription and command stream stay open, so that operators
// see it draining, but once either ends it is not opened again: a new
// process of the node, started beside this one in a rolling restart, takes
// them over for good.
func (d *Dataplane) Drain(ctx context.Context) error {
	d.client.Retire()
	d.commands.Retire()
	d.Reporter.Draining()
	return d.Node.Drain(ctx)
}

// closeWait bounds how long Close waits for the connections it closed to
// end and for the control plane to confirm their records.
const closeWait = 2 * time.Second

// Close stops subscribing and taking commands, closes every listener and
// connection, sends the control plane the records of the connections that
// ended (those it closed too, within closeWait), stops reporting, waits
// for the background work to end and flushes the access log.
func (d *Dataplane) Close() {
	d.cancel()
	if d.admin != nil {
		d.admin.Close()
	}
	d.Reporter.EndpointsDone() // the last view stays the control plane's
	d.Node.Close()
	ctx, cancel := context.WithTimeout(context.Background(), closeWait)
	if left := d.Node.WaitClosed(ctx); left > 0 {
		d.logger.Warn("connections still ending at exit; their records are lost", "connections", left)
	}
	if err := d.Reporter.Flush(ctx); err != nil {
		d.logger.Warn("the last connection records may not have reached the control plane", "err", err)
	}
	cancel()
	d.stopReps()
	d.conn.Close()
	d.wg.Wait()
	if d.log != nil {
		d.log.Close()
	}
}
