// Package configapi serves sluice.v1.ConfigService, the operators' API that
// sluicectl and CI call: apply, get and list snapshot versions, and read the
// fleet and recent connections.
//
// gRPC calls every method on its own goroutine; the server holds no state of
// its own beyond its collaborators, which are safe for concurrent use.
package configapi

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-lb/sluice/controlplane/stats"
	"github.com/sluice-lb/sluice/controlplane/store"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// maxApplyAttempts bounds Apply's retries when another writer stores a
// version between its read and its write.
const maxApplyAttempts = 16

// NodeLister lists the fleet (fleet.Registry).
type NodeLister interface {
	Nodes() []*sluicev1.NodeStatus
}

// ConnLister lists recent connection records (stats.Ring).
type ConnLister interface {
	List(f stats.Filter, limit int) []*sluicev1.ConnRecord
}

// Server implements sluicev1.ConfigServiceServer.
type Server struct {
	sluicev1.UnimplementedConfigServiceServer

	store store.Store
	nodes NodeLister
	conns ConnLister
	log   *slog.Logger
}

var _ sluicev1.ConfigServiceServer = (*Server)(nil)

// New returns a server over st, nodes and conns that logs the outcome of
// each apply to log (nil: no logging).
func New(st store.Store, nodes NodeLister, conns ConnLister, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{store: st, nodes: nodes, conns: conns, log: log}
}

// Apply implements sluicev1.ConfigServiceServer. The snapshot is validated
// whole (PGV rules and the rules of package snapshot); any fault fails the
// call with INVALID_ARGUMENT and a BadRequest detail listing every fault, and
// nothing is stored. A snapshot equal to the current one is not stored again.
// With dry_run, the response tells the version the apply would create (the
// current one when nothing would change), whether it would change anything,
// and the changes; nothing is stored.
func (s *Server) Apply(ctx context.Context, req *sluicev1.ApplyRequest) (*sluicev1.ApplyResponse, error) {
	if err := validateRequest(req); err != nil {
		s.log.Info("apply refused", "author", req.GetAuthor(), "err", err)
		return nil, err
	}
	if err := snapshot.Validate(req.GetSnapshot()); err != nil {
		var faults snapshot.Errors
		errors.As(err, &faults)
		s.log.Info("apply refused", "author", req.GetAuthor(), "dry_run", req.GetDryRun(), "faults", len(faults))
		return nil, snapshot.ToStatus(err)
	}
	for range maxApplyAttempts {
		cur, err := s.store.Current(ctx)
		if err != nil {
			return nil, storeStatus(err)
		}
		base := cur.Info.GetVersion()
		if proto.Equal(cur.Snapshot, req.GetSnapshot()) {
			s.log.Info("apply unchanged", "version", base, "author", req.GetAuthor(), "dry_run", req.GetDryRun())
			return &sluicev1.ApplyResponse{Version: base}, nil
		}
		changes := changeLines(cur.Snapshot, req.GetSnapshot())
		if req.GetDryRun() {
			s.log.Info("apply dry run", "version", base, "author", req.GetAuthor(), "changes", len(changes))
			return &sluicev1.ApplyResponse{Version: base + 1, Changed: true, Changes: changes}, nil
		}
		info, changed, err := s.store.Put(ctx, base, store.Record{
			Snapshot: req.GetSnapshot(),
			Author:   req.GetAuthor(),
			Comment:  req.GetComment(),
			Changes:  changes,
		})
		if errors.Is(err, store.ErrConflict) {
			continue // someone stored a version since Current: diff again
		}
		if err != nil {
			return nil, storeStatus(err)
		}
		if !changed {
			// Equal as bytes though not by proto.Equal; nothing new.
			s.log.Info("apply unchanged", "version", info.GetVersion(), "author", req.GetAuthor())
			return &sluicev1.ApplyResponse{Version: info.GetVersion()}, nil
		}
		s.log.Info("applied", "version", info.GetVersion(), "author", req.GetAuthor(),
			"comment", req.GetComment(), "changes", len(changes))
		return &sluicev1.ApplyResponse{Version: info.GetVersion(), Changed: true, Changes: changes}, nil
	}
	return nil, status.Error(codes.Aborted, "configapi: too many concurrent applies; try again")
}

// validateRequest checks the request's own fields. The snapshot is left to
// snapshot.Validate, which names each fault's path in the document.
func validateRequest(req *sluicev1.ApplyRequest) error {
	if req.GetSnapshot() == nil {
		return snapshot.ToStatus(snapshot.Errors{{Path: "snapshot", Message: "is required"}})
	}
	shallow := &sluicev1.ApplyRequest{
		Snapshot: &sluicev1.Snapshot{},
		DryRun:   req.GetDryRun(),
		Author:   req.GetAuthor(),
		Comment:  req.GetComment(),
	}
	err := shallow.ValidateAll()
	if err == nil {
		return nil
	}
	var faults snapshot.Errors
	var multi sluicev1.ApplyRequestMultiError
	if errors.As(err, &multi) {
		for _, e := range multi.AllErrors() {
			var fe sluicev1.ApplyRequestValidationError
			if errors.As(e, &fe) {
				faults = append(faults, snapshot.FieldError{Path: protoFieldName(req, fe.Field()), Message: fe.Reason()})
			}
		}
	}
	if len(faults) == 0 {
		return status.Errorf(codes.InvalidArgument, "configapi: %v", err)
	}
	br := &errdetails.BadRequest{}
	for _, f := range faults {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: f.Path, Description: f.Message})
	}
	st, derr := status.New(codes.InvalidArgument, "invalid request: "+faults.Error()).WithDetails(br)
	if derr != nil {
		return status.Error(codes.InvalidArgument, "invalid request: "+faults.Error())
	}
	return st.Err()
}

// protoFieldName turns the Go field name PGV reports ("DryRun") into the
// proto one ("dry_run") that users and the BadRequest detail speak.
func protoFieldName(m proto.Message, goName string) string {
	fields := m.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		name := string(fields.Get(i).Name())
		if strings.EqualFold(strings.ReplaceAll(name, "_", ""), goName) {
			return name
		}
	}
	return goName
}

func changeLines(old, new *sluicev1.Snapshot) []string {
	changes := snapshot.Diff(old, new)
	out := make([]string, 0, len(changes))
	for _, c := range changes {
		out = append(out, c.String())
	}
	return out
}

// Get implements sluicev1.ConfigServiceServer.
func (s *Server) Get(ctx context.Context, req *sluicev1.GetRequest) (*sluicev1.GetResponse, error) {
	var (
		v   *store.Version
		err error
	)
	if req.GetVersion() == 0 {
		v, err = s.store.Current(ctx)
	} else {
		v, err = s.store.Get(ctx, req.GetVersion())
	}
	if err != nil {
		return nil, storeStatus(err)
	}
	return &sluicev1.GetResponse{Info: v.Info, Snapshot: v.Snapshot}, nil
}

// History implements sluicev1.ConfigServiceServer.
func (s *Server) History(ctx context.Context, req *sluicev1.HistoryRequest) (*sluicev1.HistoryResponse, error) {
	h, err := s.store.History(ctx, int(req.GetLimit()))
	if err != nil {
		return nil, storeStatus(err)
	}
	resp := &sluicev1.HistoryResponse{Versions: h}
	if len(h) > 0 {
		resp.Current = h[0].GetVersion()
	}
	return resp, nil
}

// ListNodes implements sluicev1.ConfigServiceServer.
func (s *Server) ListNodes(context.Context, *sluicev1.ListNodesRequest) (*sluicev1.ListNodesResponse, error) {
	return &sluicev1.ListNodesResponse{Nodes: s.nodes.Nodes()}, nil
}

// ListConns implements sluicev1.ConfigServiceServer.
func (s *Server) ListConns(_ context.Context, req *sluicev1.ListConnsRequest) (*sluicev1.ListConnsResponse, error) {
	if err := req.Validate(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "configapi: %v", err)
	}
	recs := s.conns.List(stats.Filter{
		NodeID:   req.GetNodeId(),
		Cluster:  req.GetCluster(),
		Endpoint: req.GetEndpoint(),
	}, int(req.GetLimit()))
	return &sluicev1.ListConnsResponse{Records: recs}, nil
}

// storeStatus maps store errors to gRPC codes.
func storeStatus(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, store.ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, err.Error())
}
