// Command sluice-dp is a Sluice dataplane node: it subscribes to a control
// plane, applies the snapshots it receives, proxies TCP and HTTP traffic and
// reports per-connection records.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/dataplane"
	"github.com/sluice-lb/sluice/dataplane/admin"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `sluice-dp — a Sluice dataplane node.

It connects to the control plane at --cp, subscribes as --node-id, applies
every snapshot it receives (ACK) or refuses it with the reason (NACK), and
keeps serving its last applied snapshot while the control plane is away.

SIGTERM or Ctrl-C drains the node: it tells the control plane, stops
accepting connections, lets HTTP requests and TCP sessions in progress
finish for up to --drain-grace, then closes what is left and exits. A second
signal exits at once.

The admin address serves a status page for people (/ and /stats), /status
(JSON), /metrics (Prometheus), and the probes /healthz and /readyz. With
--admin-auth-file, everything there but the probes asks for a user and
password (HTTP basic auth). The file holds one user:password per line; it
must be readable by its owner only (chmod 600), or the node refuses to start.

Usage:
  sluice-dp --cp ADDR --node-id ID [--labels k=v,...] [--admin ADDR]
            [--admin-auth-file FILE] [--drain-grace D]

Flags:
`

func main() {
	fs := flag.NewFlagSet("sluice-dp", flag.ExitOnError)
	cp := fs.String("cp", envOr("SLUICE_CP", "127.0.0.1:7070"), "control plane gRPC address (env SLUICE_CP)")
	host, _ := os.Hostname()
	nodeID := fs.String("node-id", host, "this node's id, unique in the fleet")
	labels := fs.String("labels", "", "node labels, comma-separated k=v pairs, e.g. zone=a,role=edge")
	adminAddr := fs.String("admin", "127.0.0.1:7072", "admin HTTP address (status page, /healthz, /readyz, /status, /metrics); empty disables")
	adminAuthFile := fs.String("admin-auth-file", "", "`FILE` of user:password lines (mode 0600) that the admin address, but /healthz and /readyz, asks for")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	grace := fs.Duration("drain-grace", 30*time.Second, "on SIGTERM, how long work in progress may take to finish")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	fs.Parse(os.Args[1:])

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fail("--log-level: %v", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

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
	nodeInfo := &sluicev1.Node{Id: *nodeID, Labels: lbls, BuildVersion: version}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dp, err := dataplane.Start(dataplane.Options{ControlPlane: *cp, Node: nodeInfo, AdminAddr: *adminAddr, AdminAuth: adminAuth, Logger: log})
	if err != nil {
		fail("%v", err)
	}
	log.Info("starting", "node", *nodeID, "cp", *cp, "admin", *adminAddr, "version", version)
	<-ctx.Done()
	stop() // a second signal ends the process at once
	log.Info("draining", "grace", *grace)
	drainCtx, cancel := context.WithTimeout(context.Background(), *grace)
	if err := dp.Drain(drainCtx); err != nil {
		log.Warn("closing the connections left after the drain grace")
	}
	cancel()
	log.Info("stopping")
	dp.Close()
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
		out[k] = v
	}
	return out, nil
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
