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
