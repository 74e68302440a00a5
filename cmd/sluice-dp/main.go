// Command sluice-dp is a Sluice dataplane node: it subscribes to a control
// plane, applies the snapshots it receives, proxies TCP and HTTP traffic and
// reports per-connection records.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/dataplane"
	"github.com/sluice-lb/sluice/dataplane/admin"
	"github.com/sluice-lb/sluice/internal/cliflag"
	"github.com/sluice-lb/sluice/internal/labels"
	"github.com/sluice-lb/sluice/internal/logfile"
	"github.com/sluice-lb/sluice/internal/pki"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `sluice-dp — a Sluice dataplane node.

It connects to the control plane at --cp, subscribes as --node-id, applies
every snapshot it receives (ACK) or refuses it with the reason (NACK), and
keeps serving its last applied snapshot while the control plane is away.

--cp may list several replicas of the control plane (sluice-cp --etcd),
comma-separated: the node uses the first that serves it and stays with it;
when that one dies or refuses, the node moves all its streams to the next
one in the list (and round), with backoff and jitter, telling it the
version it runs so that an unchanged snapshot is not sent again. Traffic is
served from the last applied snapshot throughout.

SIGTERM or Ctrl-C drains the node: it tells the control plane, stops
accepting connections, lets HTTP requests and TCP sessions in progress
finish for up to --drain-grace, then closes what is left (a request still
waiting for its endpoint gets no answer, as HAProxy's hard stop gives none)
and exits. A second signal exits at once (logged: the connections still
open are cut without their records). A new process started with the
same --node-id while the old one drains (give it another --admin address)
takes the node's place at the control plane; the draining one does not
take it back. A snapshot that removes a listener, or changes its protocol,
drains that listener's connections the same way, for up to --drain-grace
too, as Envoy's drain time covers both.

--max-connections caps the client connections the node holds at once over
all its listeners, as HAProxy's global maxconn does, beside each listener's
max_connections: at the cap every listener stops accepting (each holds
at most one more connection, accepted but unread), new connections wait in
the kernel's accept queue, and the node logs a warning at most once a
minute. By default the cap comes from the open-file limit (ulimit -n),
less 100 for the node's own files and halved, so that every connection can
also reach its endpoint; the start log names it.

The admin address serves a status page for people (/ and /stats), /status
(JSON), /metrics (Prometheus), the clients of each rate_limit by rate
(/rate-limits, JSON), the Go runtime's profiles (/debug/pprof/, for go tool
pprof), and the probes /healthz and /readyz. With --admin-auth-file,
everything there but the probes asks for a user and password (HTTP basic
auth); without it, the profiles and /rate-limits answer only on a loopback
address (403 elsewhere). The auth file holds one user:password per
line; it must be readable by its owner only (chmod 600), or the node refuses
to start.

--access-log writes one JSON line per HTTP request and TCP session, to a
file (appended) or to stdout with "-". It never slows traffic: when the
writer falls behind, or a write fails (a full disk), lines are dropped and
counted in sluice_access_log_dropped_total. --access-log-sample logs that share of
them, e.g. 0.01 for one in a hundred. SIGHUP reopens the file at its path,
for log rotation (logrotate's postrotate: kill -HUP PID); without a file,
SIGHUP ends the node at once, as for any program.

With --ca, the node dials the control plane over TLS and verifies it with
that CA; --cert and --key are its node certificate ("sluicectl cert issue"),
which a control plane with TLS requires. The certificate names the node:
without --node-id the node runs as the certificate's id, and a --node-id
that differs from it is refused by the control plane. Once two thirds of
its life has passed, the node renews it through the control plane (one
with --ca-key signs it), for as long again, and writes the new key and
certificate over --key and --cert; its next connections present it. A
renewal that fails is tried again a minute later, then twice as long
after each failure, up to an hour. --renew-cert=false leaves renewal to
you.

Usage:
  sluice-dp [--cp ADDR[,ADDR...]] [--node-id ID] [--labels k=v,...] [--admin ADDR]
            [--ca FILE [--cert FILE --key FILE [--renew-cert=false]]]
            [--admin-auth-file FILE] [--drain-grace D] [--log-level LEVEL]
            [--max-connections N] [--access-log PATH|- [--access-log-sample RATIO]]
            [--splice auto|always|never]
  sluice-dp --version

Flags:
`

func main() {
	fs := flag.NewFlagSet("sluice-dp", flag.ContinueOnError)
	cp := fs.String("cp", envOr("SLUICE_CP", "127.0.0.1:7070"), "control plane gRPC `ADDRS`: one address, or several replicas' comma-separated (env SLUICE_CP)")
	nodeID := fs.String("node-id", "", "this node's `ID`, unique in the fleet: two running processes with one id keep taking the control plane's streams from each other, and log an error each time (default: the host name; with --cert, the certificate's)")
	caFile := fs.String("ca", os.Getenv("SLUICE_CA"), "CA certificate `FILE` (PEM) to verify the control plane with; dials it over TLS (env SLUICE_CA)")
	certFile := fs.String("cert", "", "this node's certificate `FILE` (PEM), as 'sluicectl cert issue' writes it")
	keyFile := fs.String("key", "", "this node's private key `FILE` (PEM)")
	renewCert := fs.Bool("renew-cert", true, "renew --cert through the control plane once two thirds of its life has passed, writing the new key and certificate over --key and --cert (a control plane with --ca-key signs it); false: only by hand")
	labels := fs.String("labels", "", "node labels, comma-separated k=v pairs, each key once, e.g. zone=a,role=edge; a value has no spaces nor any of ,=!() (a selector could not name it)")
	adminAddr := fs.String("admin", "127.0.0.1:7072", "admin HTTP address (status page, /healthz, /readyz, /status, /metrics, /rate-limits, /debug/pprof/); empty disables")
	adminAuthFile := fs.String("admin-auth-file", "", "`FILE` of user:password lines (mode 0600) that the admin address, but /healthz and /readyz, asks for")
	logLevel := fs.String("log-level", "info", "the least `LEVEL` of what the node logs on stderr: debug, info, warn or error")
	grace := fs.Duration("drain-grace", 30*time.Second, "on SIGTERM, how long work in progress may take to finish; also how long the connections of a listener a snapshot removes (or changes the protocol of) have")
	accessLog := fs.String("access-log", "", "write the access log (JSON lines) to this file, or to stdout with -; empty: off")
	accessSample := fs.Float64("access-log-sample", 1, "share of requests and sessions written to the access log, above 0 and at most 1")
	maxConns := fs.Int("max-connections", 0, "the most client connections the node holds at once over all its listeners (HAProxy's global maxconn); at it, listeners stop accepting until one ends. 0: derived from the open-file limit, less 100 and halved")
	spliceMode := fs.String("splice", "auto", "which large transfers (HTTP bodies from 64 KiB, TCP bursts) go through splice(2) rather than the node's buffers: auto (those from peers on other hosts, as told by their address: a container on this host counts as another; those from peers on this one are copied), always or never (Linux only)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if code := cliflag.Parse(fs, os.Args[1:], os.Stdout, os.Stderr); code >= 0 {
		os.Exit(code)
	}
	if *showVersion {
		fmt.Println(cliflag.Version("sluice-dp", version))
		return
	}
	version = cliflag.BuildVersion(version) // for the log and the control plane
	nodeSet := cliflag.Given(fs, "node-id")
	if !nodeSet {
		*nodeID, _ = os.Hostname()
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fail("--log-level: %q is not debug, info, warn or error", *logLevel)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	tlsCfg, cert, certID, err := nodeTLS(*caFile, *certFile, *keyFile)
	if err != nil {
		fail("%v", err)
	}
	if cert != nil {
		logValidity(log, *certFile, cert, time.Now(), *renewCert)
		watchValidity(log, *certFile, tlsCfg)
	}
	if certID != "" {
		if !nodeSet {
			*nodeID = certID
		} else if *nodeID != certID {
			log.Warn("--node-id differs from the node id of --cert; the control plane will refuse the node", "node-id", *nodeID, "certificate", certID)
		}
	}
	if _, err := cliflag.ControlPlanes(*cp); err != nil {
		fail("--cp: %v", err)
	}
	if err := pki.CheckNodeID(*nodeID); err != nil {
		what := "--node-id"
		if !nodeSet && certID == "" {
			what = "the host name, the default --node-id,"
		}
		fail("%s %v", what, err)
	}
	lbls, err := parseLabels(*labels)
	if err != nil {
		fail("--labels: %v", err)
	}
	var adminAuth *admin.Credentials
	if *adminAuthFile != "" {
		if adminAuth, err = admin.LoadCredentials(*adminAuthFile); err != nil {
			fail("--admin-auth-file: %v", err)
		}
	}
	if *maxConns < 0 {
		fail("--max-connections: %d is negative; 0 derives it from the open-file limit", *maxConns)
	}
	if *grace < 0 {
		fail("--drain-grace: %v is negative; 0 closes every connection at once", *grace)
	}
	connCap, capWarn := connectionCap(*maxConns, fileLimit())
	if capWarn != "" {
		log.Warn(capWarn)
	}
	if err := dataplane.SetSplice(*spliceMode); err != nil {
		fail("--splice: %v", err)
	}
	if !(*accessSample > 0 && *accessSample <= 1) {
		fail("--access-log-sample: %v is not above 0 and at most 1", *accessSample)
	}
	logOut, logFile, err := openAccessLog(*accessLog)
	if err != nil {
		fail("--access-log: %v", err)
	}
	if logFile != nil {
		defer logFile.Close()
		defer logfile.ReopenOnHangup(log, logFile)()
	}
	nodeInfo := &sluicev1.Node{Id: *nodeID, Labels: lbls, BuildVersion: version}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dp, err := dataplane.Start(dataplane.Options{ControlPlane: *cp, TLS: tlsCfg, Node: nodeInfo, AdminAddr: *adminAddr, AdminAuth: adminAuth,
		Logger: log, AccessLog: logOut, AccessLogSample: *accessSample, MaxConnections: connCap, ListenerGrace: listenerGrace(*grace),
		CertFile: *certFile, KeyFile: *keyFile, RenewCert: *renewCert})
	if err != nil {
		fail("%v", err)
	}
	log.Info("starting", "node", *nodeID, "cp", *cp, "admin", *adminAddr, "max_connections", connCap, "version", version)
	<-ctx.Done()
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM) // before stop, so none goes unseen
	stop()
	go exitOnSecondSignal(log, again)
	log.Info("draining", "grace", *grace)
	drainCtx, cancel := context.WithTimeout(context.Background(), *grace)
	if err := dp.Drain(drainCtx); err != nil {
		log.Warn("closing the connections left after the drain grace")
	}
	cancel()
	log.Info("stopping")
	dp.Close()
}

// exitOnSecondSignal ends the process at once on a second SIGTERM or
// interrupt (from again) during the drain, as the signal's default action
// would, once it has logged that the connections still open are cut and
// their records never reach the control plane.
func exitOnSecondSignal(log *slog.Logger, again <-chan os.Signal) {
	sig := (<-again).(syscall.Signal)
	log.Warn("second signal: exiting at once, without the rest of the drain; the connections still open are cut, and their records are lost", "signal", sig.String())
	signal.Reset(sig)
	syscall.Kill(os.Getpid(), sig) // the default action: the process ends by the signal
	select {}
}

func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if s == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not k=v", kv)
		}
		// Groups take nodes by their labels: a label that no selector
		// can write would leave the node in no group it meant.
		if err := cmp.Or(labels.CheckKey(k), labels.CheckValue(k, v)); err != nil {
			return nil, err
		}
		if first, dup := out[k]; dup {
			// Groups take nodes by their labels: which value was meant?
			return nil, fmt.Errorf("%s is given twice (%s=%s and %s)", k, k, first, kv)
		}
		out[k] = v
	}
	return out, nil
}

// openAccessLog opens the --access-log destination: nil for "", stdout for
// "-", else the file, appended to, which it also returns (SIGHUP reopens it).
func openAccessLog(path string) (io.Writer, *logfile.File, error) {
	switch path {
	case "":
		return nil, nil, nil
	case "-":
		return os.Stdout, nil, nil
	}
	f, err := logfile.Open(path, 0o644)
	if err != nil {
		return nil, nil, err
	}
	return f, f, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sluice-dp: "+format+"\n", args...)
	os.Exit(2)
}

// listenerGrace is the node's ListenerGrace for --drain-grace d, which
// says 0 for "at once" where the option's 0 means its default.
func listenerGrace(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
