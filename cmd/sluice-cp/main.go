// Command sluice-cp is Sluice's control plane: it stores versioned snapshots,
// streams them to dataplane nodes (sluice-dp), records which version each node
// applied or refused, collects per-connection records, and serves the
// operators' API that sluicectl uses.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/controlplane"
	"github.com/sluice-lb/sluice/controlplane/stats"
	"github.com/sluice-lb/sluice/controlplane/store"
	"github.com/sluice-lb/sluice/internal/cliflag"
	"github.com/sluice-lb/sluice/internal/pki"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `Usage: sluice-cp [flags]
       sluice-cp --version
       sluice-cp init-ca --dir DIR [--hosts H,...] [--valid D]                (a CA and server certificate)
       sluice-cp issue-server-cert --dir DIR [--hosts H,...] [--valid D]      (a new server certificate: renewal)
       sluice-cp mint-token --token-key FILE [--name N] [--role R] [--ttl D]  (a token, offline: the first admin's)

sluice-cp is the Sluice control plane. It keeps versioned snapshots in an
embedded store (DIR/sluice.db), streams the current snapshot to every
dataplane node, and serves the operators' API (sluicectl) on the same gRPC
address, with gRPC health and reflection (grpcurl -plaintext ADDR list).

On --http it serves the web dashboard (http://ADDR/: the fleet, clusters
with per-second charts of the last hour, recent connections, and drain,
enable, disable and set-weight buttons), its JSON API under /api/, the
control plane's Prometheus metrics on /metrics, and /healthz.

Security (README "Secure setup"): with --tls-cert, --tls-key and --ca-cert,
gRPC and --http speak TLS, and nodes must present a certificate from the
CA, whose node id is the one they run as; with --ca-key, admins issue
those (sluicectl cert issue), nodes renew their own before they expire
(unless --node-cert-renewal=false), and the control plane renews its
--tls-cert when the CA signed it (unless --server-cert-renewal=false).
With --token-key, operators (sluicectl, the dashboard) need a bearer
token whose role (viewer, operator, admin) allows the call. Without both,
--listen and --http must be loopback addresses unless --insecure is
passed. /metrics and /healthz ask for no token. SIGINT or SIGTERM stop
it cleanly.

With --etcd, several sluice-cp replicas share one configuration through an
etcd cluster instead of --data: run as many as you like, on one --etcd and
--etcd-prefix; every one serves nodes and operators, a version applied
through one reaches the nodes of all within a second, and every one lists
every node. Nodes list them all (sluice-dp --cp a,b,c) and move to another
when theirs goes away. An etcd that serves TLS is given as https://
endpoints, with --etcd-ca unless the system's authorities sign its
certificate, and --etcd-cert and --etcd-key when it asks for a client
certificate (--client-cert-auth). An etcd with authentication on (etcdctl
auth enable) takes --etcd-user and --etcd-password-file, or a client
certificate whose common name is the user; the user's role needs
readwrite on --etcd-prefix.

Flags:
`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if code, ok := subcommand(args, os.Stdout, os.Stderr); ok {
		return code
	}
	fs := flag.NewFlagSet("sluice-cp", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	var (
		listen    = fs.String("listen", controlplane.DefaultListen, "gRPC `ADDR` for nodes (discovery, stats) and operators (config API)")
		httpAddr  = fs.String("http", controlplane.DefaultHTTP, "HTTP `ADDR` serving the dashboard (/), its JSON API (/api/), /metrics and /healthz; empty disables it")
		dataDir   = fs.String("data", controlplane.DefaultDataDir, "`DIR` of the embedded store, created 0700 if missing; not with --etcd, whose etcd holds the configuration")
		etcd      = fs.String("etcd", "", "etcd `ENDPOINTS` (comma-separated, e.g. http://10.0.0.1:2379,http://10.0.0.2:2379): share the configuration with other replicas there instead of --data")
		etcdPfx   = fs.String("etcd-prefix", store.DefaultEtcdPrefix, "etcd key `PREFIX`; replicas with the same --etcd and prefix share one configuration")
		etcdCA    = fs.String("etcd-ca", "", "PEM `FILE` of the authorities that sign etcd's certificates (its --cert-file), for https:// --etcd endpoints (default: the system's)")
		etcdCert  = fs.String("etcd-cert", "", "PEM `FILE` of this replica's client certificate, for an etcd run with --client-cert-auth; with --etcd-key")
		etcdKey   = fs.String("etcd-key", "", "PEM `FILE` of the key of --etcd-cert")
		etcdUser  = fs.String("etcd-user", "", "etcd `USER` to authenticate as, for an etcd with authentication on; its role needs readwrite on --etcd-prefix; with --etcd-password-file")
		etcdPass  = fs.String("etcd-password-file", "", "`FILE` whose first line is the password of --etcd-user; readable by its owner only (chmod 600)")
		replica   = fs.String("replica", "", "this replica's `NAME` among those on --etcd, unique among them: a second replica of a live one's name exits (default: the --listen address, or host name and port when it is 0.0.0.0 or [::])")
		insecure  = fs.Bool("insecure", false, "allow --listen and --http on addresses other than loopback ones without TLS and tokens")
		keep      = fs.Int("keep-versions", store.DefaultRetain, "keep the newest `N` snapshot versions for history and rollback; older ones are deleted")
		connsRing = fs.Int("conns-ring", stats.DefaultRingSize, "keep the last `N` per-connection records reported by nodes, for 'sluicectl conns'")
		forget    = fs.Duration("forget-nodes-after", controlplane.DefaultForgetNodesAfter, "forget a node disconnected for this `DURATION` (in nodes, stats and the dashboard's lists); 0 never")
		security  = addSecurityFlags(fs)
		printVer  = fs.Bool("version", false, "print the version and exit")
	)
	if code := cliflag.Parse(fs, args, os.Stdout, os.Stderr); code >= 0 {
		return code
	}
	if *printVer {
		fmt.Println(cliflag.Version("sluice-cp", version))
		return 0
	}
	version = cliflag.BuildVersion(version) // as the start log names it
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var endpoints []string
	for _, e := range strings.Split(*etcd, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		if err := checkEtcdEndpoint(e); err != nil {
			log.Error("bad --etcd endpoint", "endpoint", e, "err", err)
			return 2
		}
		endpoints = append(endpoints, e)
	}
	if *forget < 0 {
		log.Error("--forget-nodes-after must not be negative; 0 keeps disconnected nodes listed", "forget-nodes-after", *forget)
		return 2
	}
	if *etcd != "" && len(endpoints) == 0 {
		log.Error("--etcd names no endpoint", "etcd", *etcd)
		return 2
	}
	if len(endpoints) > 0 && cliflag.Given(fs, "data") {
		// With --etcd the configuration lives in etcd: a --data directory
		// would be neither read nor written, and its user would wonder
		// where their versions went.
		log.Error("--data and --etcd do not go together: with --etcd the configuration lives in etcd; leave out --data", "data", *dataDir, "etcd", *etcd)
		return 2
	}
	etcdTLS, err := etcdTLSConfig(endpoints, *etcdCA, *etcdCert, *etcdKey)
	if err != nil {
		log.Error("bad etcd TLS", "err", err)
		return 2
	}
	etcdPassword, err := etcdPassword(endpoints, *etcdUser, *etcdPass)
	if err != nil {
		log.Error("bad etcd user", "err", err)
		return 2
	}
	if etcdPassword != "" && etcdTLS == nil {
		log.Warn("the etcd password goes to etcd unencrypted over http://: give https:// endpoints", "etcd", *etcd)
	}
	if *etcdPfx == "" {
		log.Error("--etcd-prefix must not be empty")
		return 2
	}
	if *keep <= 0 {
		log.Error("--keep-versions must be positive", "keep-versions", *keep)
		return 2
	}
	if *connsRing <= 0 {
		log.Error("--conns-ring must be positive", "conns-ring", *connsRing)
		return 2
	}

	log.Info("starting", "version", version)
	guard, closeAudit, err := security.guard(log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 2
	}
	defer closeAudit()
	cp, err := controlplane.New(controlplane.Options{
		Listen:           *listen,
		HTTP:             *httpAddr,
		DataDir:          *dataDir,
		Etcd:             endpoints,
		EtcdPrefix:       *etcdPfx,
		EtcdTLS:          etcdTLS,
		EtcdUser:         *etcdUser,
		EtcdPassword:     etcdPassword,
		Replica:          *replica,
		ConnsRing:        *connsRing,
		ForgetNodesAfter: forgetAfter(*forget),
		KeepVersions:     *keep,
		Insecure:         *insecure,
		Security:         guard,
		Logger:           log,
	})
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cp.Serve(ctx); err != nil {
		log.Error("stopped", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// checkEtcdEndpoint refuses an --etcd endpoint that is not an etcd client
// URL, http://HOST:PORT, https://HOST:PORT, or HOST:PORT: etcd's client
// takes anything and then waits for it.
func checkEtcdEndpoint(e string) error {
	hostPort := e
	if scheme, rest, ok := strings.Cut(e, "://"); ok {
		if scheme != "http" && scheme != "https" {
			return errWantEtcdURL
		}
		hostPort = strings.TrimSuffix(rest, "/")
	}
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil || host == "" || port == "" || strings.ContainsAny(hostPort, "/?#@") {
		return errWantEtcdURL
	}
	return nil
}

var errWantEtcdURL = errors.New("want an etcd client URL, http://HOST:PORT, https://HOST:PORT, or HOST:PORT")

// etcdPassword reads the password of the etcd user from file, the first
// line of it, which only its owner may read; both are given or neither,
// and only with endpoints.
func etcdPassword(endpoints []string, user, file string) (string, error) {
	switch {
	case user == "" && file == "":
		return "", nil
	case len(endpoints) == 0:
		return "", errors.New("--etcd-user and --etcd-password-file are for the connections to --etcd, which is not given")
	case user == "":
		return "", errors.New("--etcd-password-file needs --etcd-user: the user whose password it holds")
	case file == "":
		return "", errors.New("--etcd-user needs --etcd-password-file: a file whose first line is the user's password")
	}
	if err := pki.CheckPrivate(file); err != nil {
		return "", fmt.Errorf("--etcd-password-file: %w", err)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--etcd-password-file: %w", err)
	}
	password, _, _ := strings.Cut(string(raw), "\n")
	password = strings.TrimSuffix(password, "\r")
	if password == "" {
		return "", fmt.Errorf("--etcd-password-file: %s has no password on its first line", file)
	}
	return password, nil
}

// etcdTLSConfig is the TLS of the connections to etcd at endpoints: none
// when no endpoint is https:// and no --etcd-ca, --etcd-cert or --etcd-key
// is given; otherwise every endpoint speaks TLS (a bare HOST:PORT too),
// verified against caFile or the system's authorities, and certFile and
// keyFile are the replica's client certificate if given.
func etcdTLSConfig(endpoints []string, caFile, certFile, keyFile string) (*tls.Config, error) {
	var plain, secure string // an endpoint of each kind, for the errors
	for _, e := range endpoints {
		switch {
		case strings.HasPrefix(e, "http://") && plain == "":
			plain = e
		case strings.HasPrefix(e, "https://") && secure == "":
			secure = e
		}
	}
	flags := caFile != "" || certFile != "" || keyFile != ""
	switch {
	case flags && len(endpoints) == 0:
		return nil, errors.New("--etcd-ca, --etcd-cert and --etcd-key are for the connections to --etcd, which is not given")
	case !flags && secure == "":
		return nil, nil
	case plain != "" && secure != "":
		return nil, fmt.Errorf("--etcd mixes plain %s and TLS %s: give https:// for every endpoint of a TLS etcd", plain, secure)
	case plain != "":
		return nil, fmt.Errorf("--etcd-ca, --etcd-cert and --etcd-key are for TLS, but --etcd gives plain %s: give https://%s", plain, strings.TrimPrefix(plain, "http://"))
	case (certFile == "") != (keyFile == ""):
		return nil, errors.New("--etcd-cert and --etcd-key go together: the client certificate and its key")
	}
	var roots *x509.CertPool // nil: the system's authorities
	if caFile != "" {
		var err error
		if roots, err = pki.LoadPool(caFile); err != nil {
			return nil, fmt.Errorf("--etcd-ca: %w", err)
		}
	}
	cfg, err := pki.ClientTLS("", certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--etcd-cert, --etcd-key: %w", err)
	}
	cfg.RootCAs = roots
	return cfg, nil
}

// forgetAfter is Options.ForgetNodesAfter for --forget-nodes-after d:
// the flag's 0 is the option's never.
func forgetAfter(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
