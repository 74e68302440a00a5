package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/sluice-lb/sluice/controlplane/auth"
	"github.com/sluice-lb/sluice/internal/cliflag"
	"github.com/sluice-lb/sluice/internal/logfile"
	"github.com/sluice-lb/sluice/internal/pki"
)

// securityFlags are sluice-cp's flags for TLS, tokens and the audit log.
type securityFlags struct {
	tlsCert, tlsKey, caCert, caKey, tokenKey, auditLog *string
	renewal, serverRenewal                             *bool
}

func addSecurityFlags(fs *flag.FlagSet) *securityFlags {
	return &securityFlags{
		tlsCert:       fs.String("tls-cert", "", "the control plane's server certificate `FILE` (PEM); with --tls-key and --ca-cert, gRPC and --http speak TLS and nodes must present certificates from the CA"),
		tlsKey:        fs.String("tls-key", "", "the server certificate's private key `FILE` (PEM)"),
		caCert:        fs.String("ca-cert", "", "the CA certificate `FILE` (PEM) that node certificates must be signed by"),
		caKey:         fs.String("ca-key", "", "the CA's private key `FILE` (mode 0600); lets admins issue node certificates (sluicectl cert issue), and nodes renew theirs before they expire"),
		renewal:       fs.Bool("node-cert-renewal", true, "with --ca-key, let each node renew its own certificate, for as long again, once two thirds of its life has passed; false: only admins issue them"),
		serverRenewal: fs.Bool("server-cert-renewal", true, "with --ca-key, renew --tls-cert, when that CA signed it, once two thirds of its life has passed: a new one for the same names, for as long again, written over --tls-cert and --tls-key; false: by hand (issue-server-cert)"),
		tokenKey:      fs.String("token-key", "", "`FILE` of the key that signs and verifies bearer tokens, created (0600) if missing; operators then need a token (sluicectl --token)"),
		auditLog:      fs.String("audit-log", "", "append one JSON line per change attempt (allowed or refused) to `FILE`, or to stdout with -"),
	}
}

// guard builds the control plane's auth.Guard from the flags: nil when
// none is set. The function returned closes the audit log.
func (f *securityFlags) guard(log *slog.Logger) (*auth.Guard, func(), error) {
	cfg := auth.Config{Logger: log.With("component", "auth")}
	closer := func() {}
	tlsSet := *f.tlsCert != "" || *f.tlsKey != "" || *f.caCert != ""
	switch {
	case tlsSet && (*f.tlsCert == "" || *f.tlsKey == "" || *f.caCert == ""):
		return nil, closer, errors.New("TLS needs all of --tls-cert, --tls-key and --ca-cert")
	case *f.caKey != "" && *f.caCert == "":
		return nil, closer, errors.New("--ca-key needs --ca-cert (and TLS: --tls-cert, --tls-key)")
	}
	if tlsSet {
		c, err := pki.ServerTLS(*f.tlsCert, *f.tlsKey, *f.caCert)
		if err != nil {
			return nil, closer, fmt.Errorf("--tls-cert/--tls-key/--ca-cert: %w", err)
		}
		cfg.TLS, cfg.CertFile, cfg.KeyFile = c, *f.tlsCert, *f.tlsKey
		if cfg.ClientCA, err = pki.PoolID(*f.caCert); err != nil {
			return nil, closer, fmt.Errorf("--ca-cert: %w", err)
		}
	}
	if *f.caKey != "" {
		ca, err := pki.LoadCA(*f.caCert, *f.caKey)
		if err != nil {
			return nil, closer, fmt.Errorf("--ca-cert/--ca-key: %w", err)
		}
		cfg.CA = ca
	}
	cfg.NoRenewal, cfg.NoServerRenewal = !*f.renewal, !*f.serverRenewal
	if *f.tokenKey != "" {
		k, created, err := auth.LoadOrCreateKey(*f.tokenKey)
		if err != nil {
			return nil, closer, err
		}
		if created {
			log.Info("created a token key; mint the first admin token with: sluice-cp mint-token --token-key "+*f.tokenKey+" --name admin --role admin", "token-key", *f.tokenKey)
		}
		cfg.TokenKey = k
	}
	if *f.auditLog != "" {
		a, err := auth.OpenAudit(*f.auditLog, log)
		if err != nil {
			return nil, closer, fmt.Errorf("--audit-log: %w", err)
		}
		cfg.Audit = a
		if f := a.File(); f != nil {
			stopHup := logfile.ReopenOnHangup(log, f) // for log rotation
			closer = func() { stopHup(); a.Close() }
		}
	}
	if cfg.TLS == nil && cfg.TokenKey == nil && cfg.Audit == nil {
		return nil, closer, nil
	}
	return auth.New(cfg), closer, nil
}

// subcommand runs "sluice-cp init-ca", "issue-server-cert" or
// "mint-token"; ok is false for anything else.
func subcommand(args []string, stdout, stderr io.Writer) (code int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case "init-ca":
		return initCA(args[1:], stdout, stderr), true
	case "issue-server-cert":
		return issueServerCert(args[1:], stdout, stderr), true
	case "mint-token":
		return mintToken(args[1:], stdout, stderr), true
	}
	return 0, false
}

func subFlags(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sluice-cp "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	return fs
}

const initCAUsage = `Usage: sluice-cp init-ca --dir DIR [--hosts H,...] [--valid D]

Creates a CA and the control plane's server certificate signed by it, in
DIR (made 0700): ca.crt, ca.key, server.crt, server.key, keys mode 0600.
It never overwrites them. Then start the control plane with
  --tls-cert DIR/server.crt --tls-key DIR/server.key --ca-cert DIR/ca.crt --ca-key DIR/ca.key
and issue node certificates with "sluicectl cert issue".

Flags:
`

// certFlags are init-ca's and issue-server-cert's: the directory, the
// names the server certificate covers, how long it is good for.
type certFlags struct {
	cmd   string
	dir   *string
	hosts *string
	valid *time.Duration
}

func addCertFlags(fs *flag.FlagSet, cmd, dirUsage, hosts, hostsUsage, validUsage string) certFlags {
	return certFlags{
		cmd:   cmd,
		dir:   fs.String("dir", "", dirUsage),
		hosts: fs.String("hosts", hosts, hostsUsage),
		valid: fs.Duration("valid", pki.ServerValidity, validUsage),
	}
}

// parse parses args into f, and returns the hosts given, or the exit
// status of the command (0 for --help, 2 for a usage error; -1: go on).
func (f certFlags) parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (hosts []string, code int) {
	if code := cliflag.Parse(fs, args, stdout, stderr); code >= 0 {
		return nil, code
	}
	switch {
	case *f.dir == "":
		fmt.Fprintf(stderr, "sluice-cp %s: --dir is required\n", f.cmd)
		return nil, 2
	case *f.valid <= 0:
		fmt.Fprintf(stderr, "sluice-cp %s: --valid must be positive\n", f.cmd)
		return nil, 2
	}
	for h := range strings.SplitSeq(*f.hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts, -1
}

func initCA(args []string, stdout, stderr io.Writer) int {
	fs := subFlags("init-ca", initCAUsage, stderr)
	f := addCertFlags(fs, "init-ca", "`DIR` to write the files into", strings.Join(pki.DefaultHosts, ","),
		"comma-separated names and IP addresses the server certificate covers: those nodes and sluicectl dial (--cp)",
		"how long the server certificate is good for (the CA: ten years)")
	hs, code := f.parse(fs, args, stdout, stderr)
	if code >= 0 {
		return code
	}
	if len(hs) == 0 {
		// A server certificate for no name is one no node can verify.
		fmt.Fprintln(stderr, "sluice-cp init-ca: --hosts names no host: give the names and addresses that nodes and sluicectl dial (--cp)")
		return 2
	}
	paths, err := pki.InitCA(*f.dir, hs, *f.valid)
	if err != nil {
		fmt.Fprintf(stderr, "sluice-cp init-ca: %v\n", err)
		return 1
	}
	for _, p := range paths {
		fmt.Fprintln(stdout, "wrote", p)
	}
	fmt.Fprintf(stdout, "server certificate for %s\n", strings.Join(hs, ", "))
	return 0
}

const issueServerCertUsage = `Usage: sluice-cp issue-server-cert --dir DIR [--hosts H,...] [--valid D]

Writes a new server certificate and key over DIR/server.crt and
DIR/server.key, signed by the CA init-ca wrote into DIR (ca.crt, ca.key):
to renew the control plane's certificate before it expires, or to change
the names it covers. Each file is replaced whole, the key first. A control
plane started with --tls-cert DIR/server.crt --tls-key DIR/server.key
serves the new one from its next TLS handshake, without a restart; copy
the files to each replica that has its own. Nodes and sluicectl need
nothing new: they trust the CA.

Flags:
`

func issueServerCert(args []string, stdout, stderr io.Writer) int {
	fs := subFlags("issue-server-cert", issueServerCertUsage, stderr)
	f := addCertFlags(fs, "issue-server-cert", "the `DIR` init-ca wrote the CA and server certificate into", "",
		"comma-separated names and IP addresses the certificate covers (default: those of the one it replaces)",
		"how long the certificate is good for (never past the CA)")
	hs, code := f.parse(fs, args, stdout, stderr)
	if code >= 0 {
		return code
	}
	paths, names, notAfter, err := pki.RenewServer(*f.dir, hs, *f.valid)
	if err != nil {
		fmt.Fprintf(stderr, "sluice-cp issue-server-cert: %v\n", err)
		return 1
	}
	for _, p := range paths {
		fmt.Fprintln(stdout, "wrote", p)
	}
	fmt.Fprintf(stdout, "server certificate for %s, valid until %s\n", strings.Join(names, ", "), notAfter.UTC().Format(time.RFC3339))
	return 0
}

const mintTokenUsage = `Usage: sluice-cp mint-token --token-key FILE [--name N] [--role R] [--ttl D]

Mints a bearer token offline from the token key file (created 0600 if
missing), and prints it: the bootstrap for the first admin token. Once the
control plane runs, admins create tokens with "sluicectl token create".

Flags:
`

func mintToken(args []string, stdout, stderr io.Writer) int {
	fs := subFlags("mint-token", mintTokenUsage, stderr)
	keyFile := fs.String("token-key", "", "`FILE` of the token key, as sluice-cp --token-key")
	name := fs.String("name", "admin", "the token's `NAME`, recorded as the author in history and in the audit log")
	role := fs.String("role", "admin", "viewer, operator or admin")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is accepted")
	if code := cliflag.Parse(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if *keyFile == "" {
		fmt.Fprintln(stderr, "sluice-cp mint-token: --token-key is required")
		return 2
	}
	r := auth.ParseRole(*role)
	if r == 0 {
		fmt.Fprintf(stderr, "sluice-cp mint-token: --role %q: want viewer, operator or admin\n", *role)
		return 2
	}
	// Refuse the token before a new key file is left behind for it.
	if err := auth.CheckMint(*name, r, *ttl); err != nil {
		fmt.Fprintf(stderr, "sluice-cp mint-token: %v\n", err)
		return 2
	}
	k, created, err := auth.LoadOrCreateKey(*keyFile)
	if err != nil {
		fmt.Fprintf(stderr, "sluice-cp mint-token: %v\n", err)
		return 1
	}
	if created {
		fmt.Fprintf(stderr, "created token key %s (mode 0600)\n", *keyFile)
	}
	tok, c, err := k.Mint(*name, r, time.Now(), *ttl)
	if err != nil {
		fmt.Fprintf(stderr, "sluice-cp mint-token: %v\n", err)
		return 2
	}
	fmt.Fprintln(stdout, tok)
	fmt.Fprintf(stderr, "token %q, role %s, expires %s\n", c.Name, c.Role, c.ExpiresAt().Format(time.RFC3339))
	return 0
}
