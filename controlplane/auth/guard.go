// Package auth secures the control plane's gRPC API (and the dashboard's
// JSON API, which calls it through the same interceptors):
//
//   - Nodes (DiscoveryService, StatsService, CommandService,
//     NodeCertService) present a client certificate from the control
//     plane's CA when TLS is on. The node id is the certificate's (see
//     package pki), and a stream whose messages claim another id is
//     refused with PERMISSION_DENIED.
//   - Operators (ConfigService, AuthService and any other service but
//     health and reflection) present a bearer token when a token key is
//     set. Its role decides what they may call (see required). A node
//     certificate never calls the operator API.
//   - Every change attempt, allowed or refused, is one line of the audit
//     log (see Entry).
//
// Without a token key, operator calls are anonymous and may do anything,
// as before authentication existed; without TLS, node streams are not
// checked.
package auth

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sluice-lb/sluice/internal/pki"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Config is what a Guard enforces; each part is optional.
type Config struct {
	// TLS is the gRPC server's TLS configuration (pki.ServerTLS); nil: the
	// control plane speaks plain gRPC and node streams are not checked.
	TLS *tls.Config
	// TokenKey verifies bearer tokens; nil: no tokens, every operator call
	// is anonymous and allowed.
	TokenKey *Key
	// ClientCA is an id of the CA node certificates are checked against
	// (pki.PoolID of --ca-cert), which replicas compare (Settings).
	ClientCA string
	// CA issues node certificates (AuthService.IssueCert) and renews them
	// (NodeCertService.RenewCert); nil: it cannot.
	CA *pki.CA
	// NoRenewal refuses NodeCertService.RenewCert: node certificates are
	// then issued by an admin alone (sluice-cp --node-cert-renewal=false).
	NoRenewal bool
	// CertFile and KeyFile are the files TLS serves (--tls-cert,
	// --tls-key). With CA, and unless NoServerRenewal, RenewServing writes
	// a renewed certificate over them when it is due, if CA signed it.
	CertFile, KeyFile string
	NoServerRenewal   bool
	// Audit receives one entry per change attempt; nil: none.
	Audit  *Audit
	Logger *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Guard enforces a Config through gRPC interceptors. A nil *Guard enforces
// nothing: its methods return no options and no interceptors.
type Guard struct {
	cfg Config
	log *slog.Logger
	now func() time.Time
	rev revocations
}

// New returns a Guard for cfg.
func New(cfg Config) *Guard {
	g := &Guard{cfg: cfg, log: cfg.Logger, now: cfg.Now}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.now == nil {
		g.now = time.Now
	}
	return g
}

// Secure reports whether both TLS and tokens are on, which is what lets
// the control plane listen on addresses other than loopback ones without
// --insecure.
func (g *Guard) Secure() bool { return g != nil && g.cfg.TLS != nil && g.cfg.TokenKey != nil }

// ServerOptions are the gRPC server options that enforce g: its TLS
// credentials (which log every refused handshake) and its stream
// interceptor.
func (g *Guard) ServerOptions() []grpc.ServerOption {
	if g == nil {
		return nil
	}
	opts := []grpc.ServerOption{grpc.ChainStreamInterceptor(g.Stream)}
	if g.cfg.TLS != nil {
		opts = append(opts, grpc.Creds(&handshakeLog{TransportCredentials: credentials.NewTLS(g.cfg.TLS), log: g.log}))
	}
	return opts
}

// UnaryInterceptors returns g's unary interceptor, for the gRPC server and
// the dashboard's JSON API alike.
func (g *Guard) UnaryInterceptors() []grpc.UnaryServerInterceptor {
	if g == nil {
		return nil
	}
	return []grpc.UnaryServerInterceptor{g.Unary}
}

// HTTPTLS is the TLS configuration of the dashboard's listener: the
// control plane's certificate, no client certificates. nil without TLS.
func (g *Guard) HTTPTLS() *tls.Config {
	if g == nil || g.cfg.TLS == nil {
		return nil
	}
	c := g.cfg.TLS.Clone()
	c.ClientAuth, c.ClientCAs = tls.NoClientCert, nil
	return c
}

// Settings are what every control-plane replica of a fleet must have
// alike, for fleetview to compare: whether it speaks TLS, the CA it
// checks node certificates against (Config.ClientCA), and the token key
// it checks tokens with (its ID), each "off" when it does not.
func (g *Guard) Settings() map[string]string {
	settings := map[string]string{"TLS": "off", "client CA": "off", "token key": "off"}
	if g == nil {
		return settings
	}
	if g.cfg.TLS != nil {
		settings["TLS"] = "on"
		settings["client CA"] = cmp.Or(g.cfg.ClientCA, "unknown")
	}
	if g.cfg.TokenKey != nil {
		settings["token key"] = g.cfg.TokenKey.ID()
	}
	return settings
}

// ServingCertificate returns the certificate the control plane serves
// now (its --tls-cert, as last read); nil without TLS.
func (g *Guard) ServingCertificate() *x509.Certificate {
	if g == nil {
		return nil
	}
	return pki.ServingCertificate(g.cfg.TLS)
}

// RenewsServing reports whether RenewServing renews the certificate the
// control plane serves now: there is a CA key, the certificate's files
// are known, renewal is not off, and the CA signed it (one from another
// authority is someone else's to renew).
func (g *Guard) RenewsServing() bool {
	if g == nil || g.cfg.CA == nil || g.cfg.CertFile == "" || g.cfg.KeyFile == "" || g.cfg.NoServerRenewal {
		return false
	}
	cert := g.ServingCertificate()
	return cert != nil && cert.CheckSignatureFrom(g.cfg.CA.Cert) == nil
}

// RenewServing renews the certificate the control plane serves when it is
// due at now (pki.RenewalTime) and RenewsServing: a new one from the CA,
// for the same names, good for as long as it was, written over its files,
// which TLS reads again at the next handshake. It returns the new
// certificate's NotAfter, or the zero time when none was due.
func (g *Guard) RenewServing(now time.Time) (time.Time, error) {
	if !g.RenewsServing() {
		return time.Time{}, nil
	}
	cert := g.ServingCertificate()
	if now.Before(pki.RenewalTime(cert)) {
		return time.Time{}, nil
	}
	if err := g.cfg.CA.CheckOutlives(cert); err != nil {
		return time.Time{}, err
	}
	return g.cfg.CA.WriteServer(g.cfg.CertFile, g.cfg.KeyFile, pki.ServerNames(cert), pki.Validity(cert))
}

// Identity is who made a call.
type Identity struct {
	// Name is the token's name, or "anonymous".
	Name string
	Role sluicev1.Role
	// Expires is when the token expires (zero when anonymous).
	Expires time.Time
	// TokenID tells the token from others of its name (Claims.ID).
	TokenID string
	// Anonymous is set when the control plane has no token key.
	Anonymous bool
}

type identityKey struct{}

// FromContext returns the identity the interceptor put in a handler's
// context.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

var anonymous = Identity{Name: "anonymous", Role: sluicev1.Role_ROLE_ADMIN, Anonymous: true}

// api says who may call a service.
type api int

const (
	apiOperator api = iota // tokens and roles
	apiNode                // node certificates
	apiOpen                // anyone: health, reflection
)

func classify(fullMethod string) api {
	svc, _, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	switch svc {
	case sluicev1.DiscoveryService_ServiceDesc.ServiceName,
		sluicev1.StatsService_ServiceDesc.ServiceName,
		sluicev1.CommandService_ServiceDesc.ServiceName,
		sluicev1.NodeCertService_ServiceDesc.ServiceName:
		return apiNode
	case "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection":
		return apiOpen
	}
	return apiOperator
}

// roles is the role each operator method needs. A method not listed needs
// admin: a new RPC is closed until someone decides who may call it
// (TestEveryMethodHasARole fails until then).
var roles = map[string]sluicev1.Role{
	sluicev1.ConfigService_Get_FullMethodName:              sluicev1.Role_ROLE_VIEWER, // show_secrets: admin
	sluicev1.ConfigService_History_FullMethodName:          sluicev1.Role_ROLE_VIEWER,
	sluicev1.ConfigService_ListNodes_FullMethodName:        sluicev1.Role_ROLE_VIEWER,
	sluicev1.ConfigService_ListConns_FullMethodName:        sluicev1.Role_ROLE_VIEWER,
	sluicev1.ConfigService_ListReplicas_FullMethodName:     sluicev1.Role_ROLE_VIEWER,
	sluicev1.ConfigService_GetStats_FullMethodName:         sluicev1.Role_ROLE_VIEWER,
	sluicev1.ConfigService_Apply_FullMethodName:            sluicev1.Role_ROLE_OPERATOR,
	sluicev1.ConfigService_UpdateEndpoint_FullMethodName:   sluicev1.Role_ROLE_OPERATOR,
	sluicev1.ConfigService_Rollback_FullMethodName:         sluicev1.Role_ROLE_OPERATOR,
	sluicev1.ConfigService_ShutdownSessions_FullMethodName: sluicev1.Role_ROLE_OPERATOR,
	// Node groups and staged rollouts (main's config.proto, merged later):
	// named here so that the merge finds them decided.
	"/sluice.v1.ConfigService/GetRollout":                  sluicev1.Role_ROLE_VIEWER,
	"/sluice.v1.ConfigService/ListGroups":                  sluicev1.Role_ROLE_VIEWER,
	"/sluice.v1.ConfigService/ResumeRollout":               sluicev1.Role_ROLE_OPERATOR,
	"/sluice.v1.ConfigService/AbortRollout":                sluicev1.Role_ROLE_OPERATOR,
	"/sluice.v1.ConfigService/SetGroup":                    sluicev1.Role_ROLE_OPERATOR,
	"/sluice.v1.ConfigService/DeleteGroup":                 sluicev1.Role_ROLE_OPERATOR,
	sluicev1.AuthService_WhoAmI_FullMethodName:             sluicev1.Role_ROLE_VIEWER,
	sluicev1.AuthService_CreateToken_FullMethodName:        sluicev1.Role_ROLE_ADMIN,
	sluicev1.AuthService_IssueCert_FullMethodName:          sluicev1.Role_ROLE_ADMIN,
	sluicev1.ConfigService_RevokeNode_FullMethodName:       sluicev1.Role_ROLE_ADMIN,
	sluicev1.ConfigService_ListRevokedNodes_FullMethodName: sluicev1.Role_ROLE_VIEWER,
}

// required is the role a call of method with req needs, and whether it is
// a change attempt (or a read of secrets) that the audit log records.
func required(method string, req any) (role sluicev1.Role, audited bool) {
	if g, ok := req.(*sluicev1.GetRequest); ok && g.GetShowSecrets() {
		return sluicev1.Role_ROLE_ADMIN, true
	}
	role, ok := roles[method]
	if !ok {
		return sluicev1.Role_ROLE_ADMIN, true
	}
	return role, role > sluicev1.Role_ROLE_VIEWER
}

// Unary is the unary interceptor.
func (g *Guard) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	switch classify(info.FullMethod) {
	case apiOpen:
		return h(ctx, req)
	case apiNode:
		if _, err := g.node(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
	_, audited := required(info.FullMethod, req)
	e := Entry{Time: g.now().UTC(), Peer: peerAddr(ctx), Method: info.FullMethod}
	describe(&e, req)
	id, node, err := g.authorize(ctx, info.FullMethod, req)
	e.Identity, e.Role, e.Node, e.TokenID = id.Name, RoleName(id.Role), node, id.TokenID
	if id.Name == "anonymous" {
		e.Role = ""
	}
	if err != nil {
		g.refused(ctx, info.FullMethod, id, node, err)
		if audited {
			e.Outcome, e.Error = outcome(err)
			g.cfg.Audit.Write(e)
		}
		return nil, err
	}
	if !id.Anonymous {
		e.ClaimedAuthor = setAuthor(req, id.Name)
	}
	resp, err := h(context.WithValue(ctx, identityKey{}, id), req)
	if audited {
		e.Outcome, e.Error = outcome(err)
		if v, ok := resp.(interface{ GetVersion() uint64 }); ok && err == nil {
			e.Version = v.GetVersion()
		}
		if t, ok := resp.(*sluicev1.CreateTokenResponse); ok && err == nil {
			// Which token was made, to tell it from others of its name
			// later: its id, read back from it, and its expiry.
			if c, verr := g.cfg.TokenKey.Verify(t.GetToken(), g.now()); verr == nil {
				e.NewTokenID, e.NewTokenExpires = c.ID, c.ExpiresAt()
			}
		}
		g.cfg.Audit.Write(e)
	}
	return resp, err
}

// Stream is the stream interceptor.
func (g *Guard) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx := ss.Context()
	switch classify(info.FullMethod) {
	case apiOpen:
		return h(srv, ss)
	case apiNode:
		if g.cfg.TLS == nil {
			return h(srv, ss)
		}
		id, err := g.node(ctx, info.FullMethod)
		if err != nil {
			return err
		}
		ctx, closeFn, err := g.open(ctx, id, verifiedLeaf(ctx))
		if err != nil {
			return err
		}
		defer closeFn()
		err = h(srv, &nodeStream{ServerStream: ss, ctx: ctx, g: g, id: id, method: info.FullMethod})
		if cause := context.Cause(ctx); cause != nil && status.Code(cause) == codes.PermissionDenied {
			return cause // ended by a revocation: say so, whatever the handler made of it
		}
		return err
	}
	// Operator streams (none yet) are checked as a unary call without a
	// request would be.
	id, node, err := g.authorize(ctx, info.FullMethod, nil)
	if err != nil {
		g.refused(ctx, info.FullMethod, id, node, err)
		return err
	}
	return h(srv, &identityStream{ServerStream: ss, ctx: context.WithValue(ctx, identityKey{}, id)})
}

// authorize says who calls method with req and whether they may. node is
// the node of a node certificate the caller presented.
func (g *Guard) authorize(ctx context.Context, method string, req any) (id Identity, node string, err error) {
	if leaf := verifiedLeaf(ctx); leaf != nil {
		if n, err := pki.NodeID(leaf); err == nil {
			return Identity{Name: "anonymous"}, n, status.Errorf(codes.PermissionDenied,
				"a node certificate (node %s) cannot call the operator API; operators authenticate with a token", n)
		}
	}
	if g.cfg.TokenKey == nil {
		return anonymous, "", nil
	}
	tok, err := bearer(ctx)
	if err != nil {
		return Identity{Name: "anonymous"}, "", err
	}
	claims, err := g.cfg.TokenKey.Verify(tok, g.now())
	var expired *ExpiredError
	switch {
	case errors.As(err, &expired):
		return Identity{Name: claims.Name, Role: claims.RoleOf(), Expires: claims.ExpiresAt(), TokenID: claims.ID}, "",
			status.Error(codes.Unauthenticated, err.Error())
	case errors.Is(err, ErrSignature):
		return Identity{Name: "anonymous"}, "", status.Error(codes.Unauthenticated,
			"unknown token: its signature does not verify with this control plane's token key")
	case err != nil:
		return Identity{Name: "anonymous"}, "", status.Error(codes.Unauthenticated, err.Error())
	}
	id = Identity{Name: claims.Name, Role: claims.RoleOf(), Expires: claims.ExpiresAt(), TokenID: claims.ID}
	need, _ := required(method, req)
	if id.Role >= need {
		return id, "", nil
	}
	if g, ok := req.(*sluicev1.GetRequest); ok && g.GetShowSecrets() {
		return id, "", status.Errorf(codes.PermissionDenied,
			"show_secrets needs the admin role; token %q has role %s", id.Name, RoleName(id.Role))
	}
	short := method[strings.LastIndex(method, "/")+1:]
	return id, "", status.Errorf(codes.PermissionDenied,
		"token %q has role %s; %s needs role %s", id.Name, RoleName(id.Role), short, RoleName(need))
}

// bearer returns the token of the call's "authorization: Bearer TOKEN".
func bearer(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	switch {
	case len(vals) == 0:
		return "", status.Error(codes.Unauthenticated,
			"no token: this control plane needs a bearer token (sluicectl --token or $SLUICE_TOKEN; the dashboard's token field)")
	case len(vals) > 1:
		return "", status.Error(codes.Unauthenticated, "more than one authorization header")
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(tok) == "" {
		return "", status.Error(codes.Unauthenticated, `malformed authorization header: want "Bearer TOKEN"`)
	}
	return strings.TrimSpace(tok), nil
}

// node returns the node id of the caller's certificate, which a node API
// needs when TLS is on.
func (g *Guard) node(ctx context.Context, method string) (string, error) {
	if g.cfg.TLS == nil {
		return "", nil
	}
	leaf := verifiedLeaf(ctx)
	if leaf == nil {
		err := status.Errorf(codes.Unauthenticated,
			"%s needs a node certificate signed by the control plane's CA (sluice-dp --cert and --key)", method)
		g.log.Warn("node refused: no client certificate", "peer", peerAddr(ctx), "method", method)
		return "", err
	}
	id, err := pki.NodeID(leaf)
	if err != nil {
		g.log.Warn("node refused: not a node certificate", "peer", peerAddr(ctx), "method", method,
			"subject", leaf.Subject.String(), "err", err)
		return "", status.Errorf(codes.PermissionDenied, "the client certificate %q is not a node certificate: %v",
			leaf.Subject.CommonName, err)
	}
	if err := g.checkRevoked(id, leaf); err != nil {
		g.log.Warn("node refused: its certificate was revoked", "node", id, "peer", peerAddr(ctx), "method", method,
			"not_before", leaf.NotBefore.UTC().Format(time.RFC3339))
		return "", err
	}
	return id, nil
}

func (g *Guard) refused(ctx context.Context, method string, id Identity, node string, err error) {
	attrs := []any{"method", method, "peer", peerAddr(ctx), "identity", id.Name,
		"code", status.Code(err).String(), "err", status.Convert(err).Message()}
	if node != "" {
		attrs = append(attrs, "node", node)
	}
	g.log.Warn("call refused", attrs...)
}

// verifiedLeaf returns the client certificate the TLS handshake verified,
// or nil.
func verifiedLeaf(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return info.State.VerifiedChains[0][0]
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// setAuthor puts name in req's author field, if it has one, and returns
// what the client had put there when it differs.
func setAuthor(req any, name string) (claimed string) {
	m, ok := req.(proto.Message)
	if !ok {
		return ""
	}
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName("author")
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() {
		return ""
	}
	if claimed = r.Get(fd).String(); claimed == name {
		claimed = ""
	}
	r.Set(fd, protoreflect.ValueOfString(name))
	return claimed
}

// describe fills e's target from the request.
func describe(e *Entry, req any) {
	switch r := req.(type) {
	case *sluicev1.ApplyRequest:
		e.Target, e.DryRun = "snapshot", r.GetDryRun()
	case *sluicev1.UpdateEndpointRequest:
		e.Target, e.DryRun = r.GetCluster()+"/"+r.GetEndpoint(), r.GetDryRun()
	case *sluicev1.RollbackRequest:
		e.Target, e.DryRun = fmt.Sprintf("version %d", r.GetVersion()), r.GetDryRun()
	case *sluicev1.ShutdownSessionsRequest:
		e.Target = r.GetCluster() + "/" + r.GetEndpoint()
	case *sluicev1.GetRequest:
		e.Target = "current version"
		if r.GetVersion() != 0 {
			e.Target = fmt.Sprintf("version %d", r.GetVersion())
		}
		if r.GetShowSecrets() {
			e.Target += " with secrets"
		}
	case *sluicev1.CreateTokenRequest:
		e.Target = fmt.Sprintf("token %s (%s)", r.GetName(), RoleName(r.GetRole()))
	case *sluicev1.IssueCertRequest:
		e.Target = "node " + r.GetNodeId()
	case *sluicev1.RevokeNodeRequest:
		e.Target, e.DryRun = "node "+r.GetNodeId(), r.GetDryRun()
	}
}

func outcome(err error) (string, string) {
	if err == nil {
		return "ok", ""
	}
	st := status.Convert(err)
	return st.Code().String(), st.Message()
}

// nodeStream checks that every message a node sends claims the id of its
// certificate (or none); its context ends when a revocation covers the
// certificate (Guard.SetRevoked), and so does its next message.
type nodeStream struct {
	grpc.ServerStream
	ctx    context.Context
	g      *Guard
	id     string
	method string
}

func (s *nodeStream) Context() context.Context { return s.ctx }

func (s *nodeStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if cause := context.Cause(s.ctx); cause != nil && status.Code(cause) == codes.PermissionDenied {
		return cause
	}
	claimed := claimedID(m)
	if claimed == "" || claimed == s.id {
		return nil
	}
	s.g.log.Warn("node refused: its claimed id does not match its certificate",
		"claimed", claimed, "certificate", s.id, "peer", peerAddr(s.Context()), "method", s.method)
	return status.Errorf(codes.PermissionDenied, "node id %s does not match its certificate (%s)", claimed, s.id)
}

// claimedID is the node id a node's message claims: DiscoveryRequest's
// node.id, StatsReport's and CommandReply's node_id, or any other message
// with one of those getters.
func claimedID(m any) string {
	switch v := m.(type) {
	case interface{ GetNode() *sluicev1.Node }:
		return v.GetNode().GetId()
	case interface{ GetNodeId() string }:
		return v.GetNodeId()
	}
	return ""
}

type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *identityStream) Context() context.Context { return s.ctx }
