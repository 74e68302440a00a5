package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-lb/sluice/controlplane/auth"
	"github.com/sluice-lb/sluice/internal/pki"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// security is how sluicectl proves who it is and checks the control plane:
// the global flags --token, --ca, --cert and --key.
type security struct {
	token, ca, cert, key string
}

// dialOptions are the credentials of the connection to the control plane:
// TLS verified with --ca (plain gRPC without it), with the client
// certificate of --cert and --key if given, and the token on every call.
func (s *security) dialOptions() ([]grpc.DialOption, error) {
	creds := insecure.NewCredentials()
	switch {
	case s.ca != "":
		cfg, err := pki.ClientTLS(s.ca, s.cert, s.key)
		if err != nil {
			return nil, fmt.Errorf("--ca/--cert/--key: %w", err)
		}
		creds = credentials.NewTLS(cfg)
	case s.cert != "" || s.key != "":
		return nil, fmt.Errorf("--cert and --key need --ca (or $SLUICE_CA), the CA that signed the control plane's certificate")
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if s.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(s.token)))
	}
	return opts, nil
}

// hint says what to try when the control plane cannot be reached because
// of TLS, or because --cp is an HTTP address: "" when msg is about
// something else.
func (s *security) hint(msg string) string {
	switch {
	case strings.Contains(msg, "looked like an HTTP/1.1 header"):
		return " (it answers HTTP/1.1: is it the control plane's --http address? --cp takes its gRPC --listen address, 127.0.0.1:7070 by default)"
	case s.ca == "" && strings.Contains(msg, "server preface"):
		return " (does it speak TLS? give sluicectl its CA: --ca FILE or $SLUICE_CA)"
	case s.ca != "" && strings.Contains(msg, "first record does not look like a TLS handshake"):
		return " (it speaks plain gRPC: leave out --ca and $SLUICE_CA)"
	case s.ca != "" && strings.Contains(msg, "x509:"):
		return " (is --ca the CA that signed the control plane's certificate, and does that certificate name the --cp host?)"
	}
	return ""
}

// bearer sends a token as "authorization: Bearer TOKEN". It is sent over
// plain gRPC too: a control plane without TLS listens on loopback only,
// unless its operator passed --insecure.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

func init() {
	commands = append(commands,
		command{name: "whoami", summary: "show the token's name, role and expiry", run: cmdWhoAmI},
		command{name: "token", summary: "token create: make a bearer token (admin)", run: cmdToken},
		command{name: "cert", summary: "cert issue|revoke|revoked: node certificates, signed by the control plane's CA (admin)", run: cmdCert},
	)
}

func cmdWhoAmI(ctx context.Context, c *cli, _ sluicev1.ConfigServiceClient, args []string) int {
	fs := c.flags("whoami", "whoami", `
Show who the control plane takes you for: the name and role of your token
(--token or $SLUICE_TOKEN), and when it expires.`)
	if st := c.parse(fs, args); st >= 0 {
		return st
	}
	ctx, cancel := c.call(ctx)
	defer cancel()
	resp, err := sluicev1.NewAuthServiceClient(c.conn).WhoAmI(ctx, &sluicev1.WhoAmIRequest{})
	if err != nil {
		return c.rpcError("whoami", err)
	}
	if !resp.GetAuthEnabled() {
		fmt.Fprintln(c.stdout, "anonymous: the control plane checks no tokens (no --token-key)")
		return 0
	}
	fmt.Fprintf(c.stdout, "%s, role %s, expires %s\n", resp.GetName(), auth.RoleName(resp.GetRole()),
		resp.GetExpires().AsTime().Format(time.RFC3339))
	return 0
}

func cmdToken(ctx context.Context, c *cli, _ sluicev1.ConfigServiceClient, args []string) int {
	fs := c.flags("token create", "token create --name N --role viewer|operator|admin [--ttl D]", `
Ask the control plane (admin role) for a bearer token, and print it on
stdout. The token is not stored anywhere: it carries its name, role and
expiry, signed with the control plane's token key, so keep it secret.
History and the audit log name its holder by --name.

Roles: viewer reads (get, history, nodes, stats, conns); operator also
changes the fleet (apply, rollback, set-weight, drain, disable, enable,
shutdown-sessions); admin also creates tokens, issues and revokes node
certificates and reads secrets (get --show-secrets).`)
	name := fs.String("name", "", "the token's `NAME` (required): letters, digits, ._@-")
	role := fs.String("role", "", "`ROLE` (required): viewer, operator or admin")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is accepted")
	if len(args) == 0 || args[0] != "create" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			return c.parse(fs, args)
		}
		if len(args) > 0 {
			return c.usageError(fs, "there is no \"token %s\": tokens are created, and live until they expire", args[0])
		}
		return c.usageError(fs, "want: token create")
	}
	if st := c.parse(fs, args[1:]); st >= 0 {
		return st
	}
	switch {
	case *name == "" && *role == "":
		return c.usageError(fs, "--name and --role are required")
	case *name == "":
		return c.usageError(fs, "--name is required: who or what the token is for")
	case *role == "":
		return c.usageError(fs, "--role is required: viewer, operator or admin")
	}
	r := auth.ParseRole(*role)
	if r == sluicev1.Role_ROLE_UNSPECIFIED {
		return c.usageError(fs, "--role %q: want viewer, operator or admin", *role)
	}
	if *ttl < time.Second {
		return c.usageError(fs, "--ttl must be at least 1s, not %s", *ttl)
	}
	ctx, cancel := c.call(ctx)
	defer cancel()
	resp, err := sluicev1.NewAuthServiceClient(c.conn).CreateToken(ctx, &sluicev1.CreateTokenRequest{
		Name: *name, Role: r, Ttl: durationpb.New(*ttl)})
	if err != nil {
		return c.rpcError("token create", err)
	}
	fmt.Fprintln(c.stdout, resp.GetToken())
	fmt.Fprintf(c.stderr, "token %q, role %s, expires %s\n", *name, *role, resp.GetExpires().AsTime().Format(time.RFC3339))
	return 0
}

// maxCertValidity is the longest --valid the control plane signs for.
const maxCertValidity = 10 * 365 * 24 * time.Hour

func cmdCert(ctx context.Context, c *cli, client sluicev1.ConfigServiceClient, args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "issue":
			return certIssue(ctx, c, args[1:])
		case "revoke":
			return certRevoke(ctx, c, client, args[1:])
		case "revoked":
			return certRevoked(ctx, c, client, args[1:])
		}
	}
	fs := c.flags("cert", "cert issue|revoke|revoked [flags]", `
Node certificates (admin): "cert issue" makes one, "cert revoke" refuses a
node's certificates issued until now, "cert revoked" lists the revoked
nodes. "sluicectl cert issue --help" tells the flags of each.`)
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		return c.parse(fs, args)
	}
	if len(args) > 0 {
		return c.usageError(fs, "there is no \"cert %s\": want cert issue, cert revoke or cert revoked", args[0])
	}
	return c.usageError(fs, "want: cert issue, cert revoke or cert revoked")
}

func certIssue(ctx context.Context, c *cli, args []string) int {
	fs := c.flags("cert issue", "cert issue --node ID [--out DIR] [--valid D]", `
Make a node's key here, and have the control plane (admin role) sign its
certificate with the CA it was given (sluice-cp --ca-cert, --ca-key). Writes
DIR/ID.key (mode 0600), DIR/ID.crt and DIR/ca.crt, for
  sluice-dp --ca DIR/ca.crt --cert DIR/ID.crt --key DIR/ID.key
The key never leaves this machine: only a certificate request is sent. The
certificate names the node (CN ID, URI SAN sluice://node/ID); the control
plane takes the node's id from it. Once two thirds of its life has passed,
the node renews it itself through the control plane, for as long again
(sluice-dp --renew-cert).`)
	node := fs.String("node", "", "the node's `ID` (required), as sluice-dp --node-id")
	out := fs.String("out", ".", "`DIR` to write the files into, made 0700 if missing")
	valid := fs.Duration("valid", pki.NodeValidity, "how long the certificate is good for (at most until the CA expires)")
	if st := c.parse(fs, args); st >= 0 {
		return st
	}
	// Before a key is made for it; the control plane would refuse it.
	if st := checkNodeFlag(c, fs, *node); st >= 0 {
		return st
	}
	if *valid <= 0 || *valid > maxCertValidity {
		return c.usageError(fs, "--valid %v: want more than 0 and at most 10 years (87600h)", *valid)
	}
	key, keyPEM, err := pki.NewKey()
	if err != nil {
		fmt.Fprintf(c.stderr, "sluicectl cert issue: %v\n", err)
		return 1
	}
	csr, err := pki.NodeCSR(*node, key)
	if err != nil {
		fmt.Fprintf(c.stderr, "sluicectl cert issue: %v\n", err)
		return 1
	}
	ctx, cancel := c.call(ctx)
	defer cancel()
	resp, err := sluicev1.NewAuthServiceClient(c.conn).IssueCert(ctx, &sluicev1.IssueCertRequest{
		NodeId: *node, CsrPem: string(csr), Valid: durationpb.New(*valid)})
	if err != nil {
		return c.rpcError("cert issue", err)
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		fmt.Fprintf(c.stderr, "sluicectl cert issue: %v\n", err)
		return 1
	}
	files := []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{*node + ".key", keyPEM, 0o600},
		{*node + ".crt", []byte(resp.GetCertPem()), 0o644},
		{"ca.crt", []byte(resp.GetCaPem()), 0o644},
	}
	for _, f := range files {
		p := filepath.Join(*out, f.name)
		if err := pki.WriteFile(p, f.data, f.perm); err != nil {
			fmt.Fprintf(c.stderr, "sluicectl cert issue: %v\n", err)
			return 1
		}
		fmt.Fprintln(c.stdout, "wrote", p)
	}
	fmt.Fprintf(c.stdout, "node %s, valid until %s\n", *node, resp.GetNotAfter().AsTime().Format(time.RFC3339))
	return 0
}

func certRevoke(ctx context.Context, c *cli, client sluicev1.ConfigServiceClient, args []string) int {
	fs := c.flags("cert revoke", "cert revoke --node ID [--dry-run] [--comment TEXT]", `
Revoke a node's certificates (admin): every replica of the control plane
refuses, from the version this stores on, the node's certificates issued
before now, ends the streams the node has open on them, and does not renew
them. Issue the node a new certificate (cert issue) to let it back. The
revocation is a version in history ("revoke node ID"), which rollback
keeps; revoking a node again moves its revocation to now.`)
	node := fs.String("node", "", "the node's `ID` (required), as sluice-dp --node-id")
	dry := fs.Bool("dry-run", false, "show the version it would store, and store nothing")
	comment := fs.String("comment", "", "kept in history (default: revoke node ID)")
	if st := c.parse(fs, args); st >= 0 {
		return st
	}
	if st := checkNodeFlag(c, fs, *node); st >= 0 {
		return st
	}
	ctx, cancel := c.call(ctx)
	defer cancel()
	resp, err := client.RevokeNode(ctx, &sluicev1.RevokeNodeRequest{NodeId: *node, DryRun: *dry, Comment: *comment, Author: author()})
	if err != nil {
		return c.rpcError("cert revoke", err)
	}
	c.printApplied(resp, *dry)
	c.printRespWarnings("cert revoke", resp)
	return 0
}

func certRevoked(ctx context.Context, c *cli, client sluicev1.ConfigServiceClient, args []string) int {
	fs := c.flags("cert revoked", "cert revoked [-o table|json]", `
List the revoked nodes: each one's id, when its certificates were revoked
(those issued before are refused) and the version that revoked them.`)
	o := outputFlag(fs, "table", "json")
	if st := c.parse(fs, args); st >= 0 {
		return st
	}
	ctx, cancel := c.call(ctx)
	defer cancel()
	resp, err := client.ListRevokedNodes(ctx, &sluicev1.ListRevokedNodesRequest{})
	if err != nil {
		return c.rpcError("cert revoked", err)
	}
	if *o == "json" {
		return c.printJSON(resp)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tREVOKED\tVERSION")
	for _, n := range resp.GetNodes() {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", n.GetNodeId(), n.GetRevokedAt().AsTime().UTC().Format(time.RFC3339), n.GetVersion())
	}
	tw.Flush()
	return 0
}

// checkNodeFlag refuses a --node that is missing or no node id, as a
// usage error; it returns -1 for a good one.
func checkNodeFlag(c *cli, fs *flag.FlagSet, node string) int {
	if node == "" {
		return c.usageError(fs, "--node is required")
	}
	if err := pki.CheckNodeID(node); err != nil {
		return c.usageError(fs, "--node %v", err)
	}
	return -1
}
