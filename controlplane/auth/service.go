package auth

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluice-lb/sluice/internal/pki"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Service implements sluicev1.AuthServiceServer. The Guard's interceptor
// has checked the caller's role before a method runs.
type Service struct {
	sluicev1.UnimplementedAuthServiceServer
	g *Guard
}

// NewService returns the AuthService of g (which may be nil: then WhoAmI
// answers anonymous and the rest fail with FAILED_PRECONDITION).
func NewService(g *Guard) *Service {
	if g == nil {
		g = New(Config{})
	}
	return &Service{g: g}
}

// WhoAmI implements sluicev1.AuthServiceServer.
func (s *Service) WhoAmI(ctx context.Context, _ *sluicev1.WhoAmIRequest) (*sluicev1.WhoAmIResponse, error) {
	id, ok := FromContext(ctx)
	if !ok {
		id = anonymous
	}
	resp := &sluicev1.WhoAmIResponse{Name: id.Name, Role: id.Role, AuthEnabled: s.g.cfg.TokenKey != nil}
	if !id.Expires.IsZero() {
		resp.Expires = timestamppb.New(id.Expires)
	}
	return resp, nil
}

// CreateToken implements sluicev1.AuthServiceServer.
func (s *Service) CreateToken(ctx context.Context, req *sluicev1.CreateTokenRequest) (*sluicev1.CreateTokenResponse, error) {
	// The name first: PGV would quote its regular expression.
	if err := checkName(req.GetName()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := req.Validate(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid request: %v", err)
	}
	if s.g.cfg.TokenKey == nil {
		return nil, status.Error(codes.FailedPrecondition, "this control plane has no token key (sluice-cp --token-key): it does not use tokens")
	}
	tok, c, err := s.g.cfg.TokenKey.Mint(req.GetName(), req.GetRole(), s.g.now(), req.GetTtl().AsDuration())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	by, _ := FromContext(ctx)
	s.g.log.Info("token created", "name", c.Name, "role", c.Role, "id", c.ID, "expires", c.ExpiresAt(), "by", by.Name, "by_token_id", by.TokenID)
	return &sluicev1.CreateTokenResponse{Token: tok, Expires: timestamppb.New(c.ExpiresAt())}, nil
}

// IssueCert implements sluicev1.AuthServiceServer.
func (s *Service) IssueCert(ctx context.Context, req *sluicev1.IssueCertRequest) (*sluicev1.IssueCertResponse, error) {
	// The node id first: PGV would quote its regular expression.
	if err := pki.CheckNodeID(req.GetNodeId()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := req.Validate(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid request: %v", err)
	}
	ca := s.g.cfg.CA
	if ca == nil {
		return nil, status.Error(codes.FailedPrecondition, "this control plane has no CA key (sluice-cp --ca-cert and --ca-key): it cannot issue certificates")
	}
	cert, notAfter, err := ca.IssueNode(req.GetNodeId(), []byte(req.GetCsrPem()), req.GetValid().AsDuration(), s.g.now())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	by, _ := FromContext(ctx)
	s.g.log.Info("node certificate issued", "node", req.GetNodeId(), "not_after", notAfter.Format(time.RFC3339), "by", by.Name)
	return &sluicev1.IssueCertResponse{CertPem: string(cert), CaPem: string(ca.PEM), NotAfter: timestamppb.New(notAfter)}, nil
}

// NodeCertService implements sluicev1.NodeCertServiceServer: nodes renew
// their own certificates. The Guard's interceptor has checked, with TLS
// on, that the caller presented a node certificate of the CA.
type NodeCertService struct {
	sluicev1.UnimplementedNodeCertServiceServer
	g *Guard
}

// NewNodeCertService returns the NodeCertService of g (which may be nil:
// then every renewal fails with FAILED_PRECONDITION).
func NewNodeCertService(g *Guard) *NodeCertService {
	if g == nil {
		g = New(Config{})
	}
	return &NodeCertService{g: g}
}

// RenewCert implements sluicev1.NodeCertServiceServer. Each call is a line
// of the audit log, renewed or refused.
func (s *NodeCertService) RenewCert(ctx context.Context, req *sluicev1.RenewCertRequest) (*sluicev1.IssueCertResponse, error) {
	e := Entry{Time: s.g.now().UTC(), Identity: "anonymous", Peer: peerAddr(ctx), Method: sluicev1.NodeCertService_RenewCert_FullMethodName}
	resp, err := s.renew(ctx, req, &e)
	e.Outcome, e.Error = outcome(err)
	s.g.cfg.Audit.Write(e)
	if err != nil {
		s.g.log.Warn("node certificate not renewed", "node", e.Node, "peer", e.Peer, "err", status.Convert(err).Message())
		return nil, err
	}
	s.g.log.Info("node certificate renewed", "node", e.Node, "peer", e.Peer, "not_after", resp.GetNotAfter().AsTime().Format(time.RFC3339))
	return resp, nil
}

func (s *NodeCertService) renew(ctx context.Context, req *sluicev1.RenewCertRequest, e *Entry) (*sluicev1.IssueCertResponse, error) {
	leaf := verifiedLeaf(ctx)
	if s.g.cfg.TLS == nil || leaf == nil {
		return nil, status.Error(codes.FailedPrecondition, "this control plane speaks plain gRPC: there is no node certificate to renew")
	}
	id, err := pki.NodeID(leaf) // the Guard refused any other certificate
	if err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "the client certificate %q is not a node certificate: %v", leaf.Subject.CommonName, err)
	}
	e.Identity, e.Node, e.Target = id, id, "node "+id
	if err := req.Validate(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid request: %v", err)
	}
	if err := s.g.checkStoredRevoked(ctx, id, leaf); err != nil {
		return nil, err
	}
	ca := s.g.cfg.CA
	switch {
	case ca == nil:
		return nil, status.Error(codes.FailedPrecondition, "this control plane has no CA key (sluice-cp --ca-key): it cannot renew node certificates; issue one with 'sluicectl cert issue'")
	case s.g.cfg.NoRenewal:
		return nil, status.Error(codes.FailedPrecondition, "this control plane does not renew node certificates (sluice-cp --node-cert-renewal=false); issue one with 'sluicectl cert issue'")
	}
	if err := ca.CheckOutlives(leaf); err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	cert, notAfter, err := ca.IssueNode(id, []byte(req.GetCsrPem()), pki.Validity(leaf), s.g.now())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &sluicev1.IssueCertResponse{CertPem: string(cert), CaPem: string(ca.PEM), NotAfter: timestamppb.New(notAfter)}, nil
}
