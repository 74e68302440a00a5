// Package configapi serves sluice.v1.ConfigService, the operators' API that
// sluicectl and CI call: apply snapshots or edit one endpoint of the current
// one, get and list snapshot versions, read the fleet, recent connections
// and the nodes' endpoint stats, and shut down an endpoint's sessions on
// every node.
//
// gRPC calls every method on its own goroutine; the server holds no state of
// its own beyond its collaborators, which are safe for concurrent use.
package configapi

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluice-lb/sluice/controlplane/groups"
	"github.com/sluice-lb/sluice/controlplane/stats"
	"github.com/sluice-lb/sluice/controlplane/store"
	"github.com/sluice-lb/sluice/internal/pki"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// maxApplyAttempts bounds the retries of Apply and UpdateEndpoint when
// another writer stores a version between their read and their write.
const maxApplyAttempts = 16

// NodeLister lists the fleet (fleet.Registry).
type NodeLister interface {
	Nodes() []*sluicev1.NodeStatus
}

// ConnLister lists recent connection records (stats.Ring).
type ConnLister interface {
	List(f stats.Filter, limit int) []*sluicev1.ConnRecord
}

// ViewLister lists the nodes' latest endpoint views (stats.Views).
type ViewLister interface {
	List(node, cluster string) []*stats.View
}

// Commander runs a command on every node connected for commands
// (command.Registry), returning one result per node; it is bounded in time.
type Commander interface {
	Run(ctx context.Context, action func(cmd *sluicev1.Command)) []*sluicev1.CommandResult
}

// A FleetLister is a NodeLister that tells when it could list this
// replica's nodes only (fleetview.View): a command for the whole fleet
// needs to know.
type FleetLister interface {
	NodeLister
	FleetNodes() ([]*sluicev1.NodeStatus, error)
}

// ReplicaLister lists the control plane's live replicas, with their
// nodes and settings (controlplane.Server).
type ReplicaLister interface {
	ListReplicas(ctx context.Context) (*sluicev1.ListReplicasResponse, error)
}

// Relayer has another replica run a command on its nodes, returning one
// result per node (cmdrelay.Relay); it is bounded in time.
type Relayer interface {
	Send(ctx context.Context, replica string, cmd *sluicev1.Command) ([]*sluicev1.CommandResult, error)
}

// Server implements sluicev1.ConfigServiceServer.
type Server struct {
	sluicev1.UnimplementedConfigServiceServer

	store store.Store
	nodes NodeLister
	conns ConnLister
	views ViewLister // nil: GetStats is unimplemented
	cmds  Commander  // nil: ShutdownSessions is unimplemented
	// replica is this control plane's name among replicas sharing an
	// etcd (NodeStatus.replica), "" without etcd.
	replica   string
	relay     Relayer // nil: commands reach this replica's nodes only
	replicas  ReplicaLister
	nodeCerts bool // nodes present certificates: RevokeNode has something to revoke
	// published is the version and configuration this control plane
	// sends its nodes (WithPublished); nil: none.
	published func() (uint64, *sluicev1.FleetConfig)
	log       *slog.Logger

	rollouts rolloutWatch // what RunRollouts saw of each rollout
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

// WithFleet gives the server what GetStats and ShutdownSessions need: the
// nodes' endpoint views and the command channel to them. It returns s;
// call it before serving.
func (s *Server) WithFleet(views ViewLister, cmds Commander) *Server {
	s.views, s.cmds = views, cmds
	return s
}

// WithReplica names this control plane among the replicas that share an
// etcd, as its NodeLister names them in NodeStatus.replica: GetStats tells
// the nodes whose stats are here from those that report to another
// replica. It returns s; call it before serving.
func (s *Server) WithReplica(name string) *Server {
	s.replica = name
	return s
}

// WithNodeCertificates tells RevokeNode that nodes present certificates
// (the control plane speaks TLS); without, it has nothing to revoke. It
// returns s; call it before serving.
func (s *Server) WithNodeCertificates(on bool) *Server {
	s.nodeCerts = on
	return s
}

// WithReplicas has ListReplicas answer from l. It returns s; call it
// before serving.
func (s *Server) WithReplicas(l ReplicaLister) *Server {
	s.replicas = l
	return s
}

// ListReplicas implements sluicev1.ConfigServiceServer.
func (s *Server) ListReplicas(ctx context.Context, _ *sluicev1.ListReplicasRequest) (*sluicev1.ListReplicasResponse, error) {
	if s.replicas == nil {
		return nil, status.Error(codes.Unimplemented, "this control plane does not list its replicas")
	}
	resp, err := s.replicas.ListReplicas(ctx)
	if err != nil {
		return nil, unavailable("FLEET_UNREADABLE", "cannot read the replicas from etcd: %v", err)
	}
	return resp, nil
}

// WithRelay has ShutdownSessions reach the nodes on other replicas too,
// through relay. It returns s; call it before serving.
func (s *Server) WithRelay(relay Relayer) *Server {
	s.relay = relay
	return s
}

// WithPublished has Get and ListGroups answer while the configuration
// store cannot be reached: with the version and configuration this
// control plane sends its nodes (discovery.Server.Config), saying so in
// their store_unreachable, rather than fail. It returns s; call it before
// serving.
func (s *Server) WithPublished(published func() (uint64, *sluicev1.FleetConfig)) *Server {
	s.published = published
	return s
}

// current reads the current version. While the store cannot be reached,
// it is the version this control plane sends its nodes, when it sends
// one (WithPublished), and stale says why that one: the store's error and
// which version it is. The published version has no info but its number.
func (s *Server) current(ctx context.Context) (v *store.Version, stale string, err error) {
	v, err = s.store.Current(ctx)
	if err == nil || s.published == nil || !errors.Is(err, store.ErrUnavailable) {
		return v, "", err
	}
	version, cfg := s.published()
	if cfg == nil {
		return nil, "", err
	}
	stale = fmt.Sprintf("%s; shown is version %d, the one this control plane sends its nodes", status.Convert(storeStatus(err)).Message(), version)
	return &store.Version{Info: &sluicev1.VersionInfo{Version: version}, Config: cfg}, stale, nil
}

// Apply implements sluicev1.ConfigServiceServer. The snapshot is validated
// whole (PGV rules and the rules of package snapshot); any fault fails the
// call with INVALID_ARGUMENT and a BadRequest detail listing every fault, and
// nothing is stored. A snapshot equal to the current one is not stored again.
// With dry_run, the response tells the version the apply would create (the
// current one when nothing would change), whether it would change anything,
// and the changes; nothing is stored. Either way, a snapshot that the
// group's nodes refused as a recent version gets a warning (refusedBefore).
func (s *Server) Apply(ctx context.Context, req *sluicev1.ApplyRequest) (*sluicev1.ApplyResponse, error) {
	if err := validateRequest(req); err != nil {
		s.log.Info("apply refused", "author", req.GetAuthor(), "err", err)
		return nil, err
	}
	group := groupOrDefault(req.GetGroup())
	if err := checkCanary(req.GetCanary()); err != nil {
		s.log.Info("apply refused", "author", req.GetAuthor(), "err", err)
		return nil, err
	}
	if snapshot.HasRedacted(req.GetSnapshot()) {
		// A snapshot fetched with redacted keys and applied back keeps the
		// stored keys; Validate refuses those it cannot find.
		if cur, err := s.store.Current(ctx); err == nil {
			if g := groups.Find(cur.Config, group); g != nil {
				snapshot.RestoreSecrets(req.GetSnapshot(), g.GetSnapshot())
			}
		}
	}
	if err := snapshot.Validate(req.GetSnapshot()); err != nil {
		var faults snapshot.Errors
		errors.As(err, &faults)
		s.log.Info("apply refused", "author", req.GetAuthor(), "dry_run", req.GetDryRun(), "faults", len(faults))
		return nil, snapshot.ToStatus(err)
	}
	fp := &fingerprint{snap: req.GetSnapshot()}
	resp, err := s.put(ctx, write{
		op:        "apply",
		done:      "applied",
		group:     group,
		selector:  req.Selector,
		author:    req.GetAuthor(),
		comment:   req.GetComment(),
		dryRun:    req.GetDryRun(),
		ifVersion: req.IfVersion,
		next: func(*sluicev1.Group) (*sluicev1.Snapshot, error) {
			return req.GetSnapshot(), nil
		},
		canary: req.GetCanary(),
		fp:     fp,
	})
	if err == nil {
		if w := s.refusedBefore(ctx, group, fp, "this apply"); w != "" {
			resp.Warnings = append(resp.Warnings, w)
		}
	}
	return resp, err
}

// refusedScan is how many of the newest versions refusedBefore looks
// through.
const refusedScan = 100

// refusedBefore is the warning of a write (what: "this apply") that sends
// group's nodes fp's snapshot when one of the group's refusedScan
// newest versions sent them the same snapshot and nodes refused it: the
// newest such version, as refusedWarning words it. The same nodes may well
// refuse it again; a CI job that applies a file again after a rollback is
// the usual way here. "" when there is none, or when the store cannot tell
// (the write went through; the warning is advice, not worth failing it
// for).
//
// A refused version is read only when its fingerprint matches (or it has
// none, stored before fingerprints were kept): a fleet where one broken
// node refuses every version must not make each apply read a hundred
// whole configurations.
func (s *Server) refusedBefore(ctx context.Context, group string, fp *fingerprint, what string) string {
	h, err := s.store.History(ctx, refusedScan)
	if err != nil {
		s.log.Warn("cannot look for refused versions of the same snapshot", "group", group, "for", what, "err", err)
		return ""
	}
	for _, info := range h {
		if len(info.GetRefusals()) == 0 || groupOrDefault(info.GetGroup()) != group {
			continue
		}
		if stored := info.GetFingerprint(); len(stored) != 0 && !bytes.Equal(stored, fp.of(fp.snap)) {
			continue
		}
		v, err := s.store.Get(ctx, info.GetVersion())
		if err != nil {
			continue // pruned since History: it is no longer one to warn of
		}
		if sentSame(v, group, fp.snap) {
			return refusedWarning(info, fmt.Sprintf("version %d, with this same snapshot,", info.GetVersion()), what)
		}
	}
	return ""
}

// sentSame is whether version v sent group's nodes snap: the same
// snapshot as far as nodes can tell (snapshot.Diff finds no change), so
// that defaults written out or left out do not hide it. A version of
// another group sent them nothing.
func sentSame(v *store.Version, group string, snap *sluicev1.Snapshot) bool {
	if groupOrDefault(v.Info.GetGroup()) != group {
		return false
	}
	sent := sentSnapshot(v.Config, group, v.Info.GetVersion())
	return sent != nil && len(snapshot.Diff(sent, snap)) == 0
}

// sentSnapshot is the snapshot that version v, as stored in cfg, sent
// group's nodes: the rollout's when v started it or edited it (its
// canaries were sent that one), else the group's. nil when cfg has no
// such group.
func sentSnapshot(cfg *sluicev1.FleetConfig, group string, v uint64) *sluicev1.Snapshot {
	g := groups.Find(cfg, group)
	if r := g.GetRollout(); r != nil && r.GetVersion() == v {
		return r.GetSnapshot()
	}
	return g.GetSnapshot()
}

// Rollback implements sluicev1.ConfigServiceServer. It stores the snapshot
// of a kept version as a new version through the same path as Apply, so
// the new version's changes are the diff from the one it replaces. The
// old snapshot is validated again: one that today's rules refuse is not
// made current (INVALID_ARGUMENT with every fault). The comment defaults to
// "rollback to version N".
func (s *Server) Rollback(ctx context.Context, req *sluicev1.RollbackRequest) (*sluicev1.ApplyResponse, error) {
	if err := requestStatus(req, req.ValidateAll()); err != nil {
		s.log.Info("rollback refused", "author", req.GetAuthor(), "err", err)
		return nil, err
	}
	old, err := s.store.Get(ctx, req.GetVersion())
	if errors.Is(err, store.ErrNotFound) {
		return nil, s.notKept(ctx, req.GetVersion())
	}
	if err != nil {
		return nil, storeStatus(err)
	}
	group := req.GetGroup()
	if group == "" {
		group = groupOrDefault(old.Info.GetGroup())
	}
	og := groups.Find(old.Config, group)
	if og == nil {
		return nil, status.Errorf(codes.NotFound, "version %d has no group %q (%s)", req.GetVersion(), group, snapshot.NameList("it has", "it has none", groupNames(old.Config)))
	}
	if err := snapshot.Validate(og.GetSnapshot()); err != nil {
		s.log.Info("rollback refused", "version", req.GetVersion(), "group", group, "author", req.GetAuthor(), "err", err)
		return nil, snapshot.ToStatus(err)
	}
	comment := req.GetComment()
	if comment == "" {
		comment = fmt.Sprintf("rollback to version %d", req.GetVersion())
		if group != groups.Default {
			comment += " of group " + group
		}
	}
	fp := &fingerprint{snap: og.GetSnapshot()}
	resp, err := s.put(ctx, write{
		op:        "rollback",
		done:      "rolled back",
		group:     group,
		author:    req.GetAuthor(),
		comment:   comment,
		dryRun:    req.GetDryRun(),
		ifVersion: req.IfVersion,
		next: func(cur *sluicev1.Group) (*sluicev1.Snapshot, error) {
			if empty(og.GetSnapshot()) && !empty(cur.GetSnapshot()) {
				// As sluicectl refuses a file that lists nothing: an
				// empty fleet is too much to get from a mistyped N.
				return nil, status.Errorf(codes.FailedPrecondition,
					"version %d of group %s holds no clusters and no listeners: rolled back to, it would remove every cluster and listener the group's nodes run; to remove them all on purpose, apply a file that holds `clusters: []`; nothing stored",
					req.GetVersion(), group)
			}
			return og.GetSnapshot(), nil
		},
		fp: fp,
	})
	if err == nil {
		if w := s.rolledBackRefused(ctx, old, group, fp); w != "" {
			resp.Warnings = append(resp.Warnings, w)
		}
	}
	return resp, err
}

// empty reports whether s holds no cluster and no listener.
func empty(s *sluicev1.Snapshot) bool {
	return len(s.GetClusters()) == 0 && len(s.GetListeners()) == 0
}

// rolledBackRefused is the warning of a rollback that sends group's nodes
// fp's snapshot, version old's of group, when nodes refused it: as version
// old itself, whatever its age, or as another of the recent versions
// (refusedBefore). Old's own refusals count only when old sent those nodes
// that snapshot: not when old was another group's, and not when it
// started or edited a rollout, whose canaries refused the rollout's
// snapshot, which a rollback does not restore.
func (s *Server) rolledBackRefused(ctx context.Context, old *store.Version, group string, fp *fingerprint) string {
	if len(old.Info.GetRefusals()) != 0 && sentSame(old, group, fp.snap) {
		return refusedWarning(old.Info, fmt.Sprintf("version %d", old.Info.GetVersion()), "this rollback")
	}
	return s.refusedBefore(ctx, group, fp, "this rollback")
}

// refusedWarning is the warning of a write that sends nodes again the
// snapshot of the version info describes, when nodes refused it: which
// (the first three by name, and how many in all) and why (the latest
// refusal's reason), as "<subject> was refused by …; they may refuse
// <what> too". "" when none did.
func refusedWarning(info *sluicev1.VersionInfo, subject, what string) string {
	rs := info.GetRefusals()
	if len(rs) == 0 {
		return ""
	}
	latest := rs[len(rs)-1]
	if len(rs) == 1 {
		return fmt.Sprintf("%s was refused by %s: %s; it may refuse %s too",
			subject, latest.GetNode(), latest.GetError(), what)
	}
	names := make([]string, 0, 3)
	for _, r := range rs[:min(len(rs), 3)] {
		names = append(names, r.GetNode())
	}
	who := strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
	if len(rs) > 3 {
		who = strings.Join(names, ", ") + fmt.Sprintf(" and %d more", len(rs)-3)
	}
	return fmt.Sprintf("%s was refused by %d nodes, %s (the latest, %s: %s); they may refuse %s too",
		subject, len(rs), who, latest.GetNode(), latest.GetError(), what)
}

// notKept is the NOT_FOUND for a version Get does not have, saying which
// versions can be asked for.
func (s *Server) notKept(ctx context.Context, version uint64) error {
	h, err := s.store.History(ctx, 0)
	if err != nil || len(h) == 0 {
		return status.Errorf(codes.NotFound, "version %d is not stored; no version is", version)
	}
	newest, oldest := h[0].GetVersion(), h[len(h)-1].GetVersion()
	return status.Errorf(codes.NotFound, "version %d is not stored; the kept versions are %d to %d", version, oldest, newest)
}

// UpdateEndpoint implements sluicev1.ConfigServiceServer. It edits one
// endpoint of the current snapshot and stores the result through the same
// path as Apply: the edited snapshot is validated whole, an edit that
// changes nothing stores nothing (changed false), and dry_run stores
// nothing. Before the first Apply it fails with FAILED_PRECONDITION; an
// unknown cluster or endpoint fails with NOT_FOUND; a request that sets
// neither weight nor state fails with INVALID_ARGUMENT. The comment defaults
// to the edit, as sluicectl spells it: "set-weight web/a 3", "drain web/a".
//
// When the group has a staged rollout, the rollout's snapshot gets the same
// edit (see editRollout), as a version of its own.
func (s *Server) UpdateEndpoint(ctx context.Context, req *sluicev1.UpdateEndpointRequest) (*sluicev1.ApplyResponse, error) {
	err := requestStatus(req, req.ValidateAll())
	if err == nil && req.Weight == nil && req.GetState() == sluicev1.AdminState_ADMIN_STATE_UNSPECIFIED {
		err = status.Error(codes.InvalidArgument, "nothing to change: set the weight, the state, or both")
	}
	if err != nil {
		s.log.Info("update endpoint refused", "author", req.GetAuthor(), "err", err)
		return nil, err
	}
	comment := req.GetComment()
	if comment == "" {
		comment = updateComment(req)
	}
	hadRollout := false // whether the group read had a rollout
	var base uint64     // the group version the edit builds on
	w := write{
		op:        "update endpoint",
		done:      "endpoint updated",
		group:     groupOrDefault(req.GetGroup()),
		author:    req.GetAuthor(),
		comment:   comment,
		dryRun:    req.GetDryRun(),
		ifVersion: req.IfVersion,
		next: func(g *sluicev1.Group) (*sluicev1.Snapshot, error) {
			if g.GetVersion() == 0 {
				return nil, status.Errorf(codes.FailedPrecondition,
					"no snapshot has been applied%s yet, so there is no endpoint to update; apply one first", toGroup(g.GetName()))
			}
			hadRollout = g.GetRollout() != nil
			base = g.GetVersion()
			return updatedSnapshot(g.GetSnapshot(), req)
		},
		endpointEdit: true,
	}
	resp, err := s.put(ctx, w)
	if status.Code(err) == codes.NotFound {
		err = s.inOtherGroups(ctx, err, w.group, req.GetCluster(), req.GetEndpoint())
	}
	if err == nil && resp.GetChanged() {
		if warn := s.builtOnRefused(ctx, base); warn != "" {
			resp.Warnings = append(resp.Warnings, warn)
		}
	}
	if err != nil || !hadRollout {
		return resp, err
	}
	return s.editRollout(ctx, w, req, resp)
}

// builtOnRefused is the warning of an endpoint edit built on base, the
// version that last changed its group's snapshot, when nodes refused what
// base sent them: the edit carries the same snapshot but for the endpoint,
// so they will most likely refuse it too, and go on running the version
// before base, edit or no edit. "" when they did not.
func (s *Server) builtOnRefused(ctx context.Context, base uint64) string {
	v, err := s.store.Get(ctx, base)
	if err != nil || len(v.Info.GetRefusals()) == 0 {
		return ""
	}
	return refusedWarning(v.Info, fmt.Sprintf("version %d, which this edit builds on,", base), "this edit")
}

// inOtherGroups adds to notFound, the NOT_FOUND of an endpoint edit of
// group, the other groups whose snapshots have that endpoint: an
// operator who left out --group most likely meant one of them.
func (s *Server) inOtherGroups(ctx context.Context, notFound error, group, cluster, endpoint string) error {
	cur, _, err := s.current(ctx)
	if err != nil || groups.Find(cur.Config, group) == nil {
		return notFound // or it is the group that was not found
	}
	var in []string
	for _, g := range cur.Config.GetGroups() {
		if g.GetName() == group {
			continue
		}
		if _, err := findEndpoint(g.GetSnapshot(), cluster, endpoint); err == nil {
			in = append(in, g.GetName())
		}
	}
	if len(in) == 0 {
		return notFound
	}
	where, give := "group "+in[0], "--group "+in[0]
	if len(in) > 1 {
		where, give = "groups "+strings.Join(in, ", "), "--group with one of them"
	}
	return status.Errorf(codes.NotFound, "%s; %s/%s is in %s, not %s: give %s",
		status.Convert(notFound).Message(), cluster, endpoint, where, group, give)
}

// updatedSnapshot returns a copy of snap with req's edit, validated whole,
// or the status to fail the call with.
func updatedSnapshot(snap *sluicev1.Snapshot, req *sluicev1.UpdateEndpointRequest) (*sluicev1.Snapshot, error) {
	next := proto.Clone(snap).(*sluicev1.Snapshot)
	ep, err := findEndpoint(next, req.GetCluster(), req.GetEndpoint())
	if err != nil {
		return nil, err
	}
	editEndpoint(ep, req)
	if err := snapshot.Validate(next); err != nil {
		return nil, snapshot.ToStatus(err)
	}
	return next, nil
}

// editEndpoint sets what req asks for on ep, keeping the snapshot as it is
// wherever the request changes nothing the dataplane would see.
func editEndpoint(ep *sluicev1.Endpoint, req *sluicev1.UpdateEndpointRequest) {
	if req.Weight != nil {
		// Unset means 1: setting 1 on an endpoint without a weight changes
		// nothing, and must not store a version that only spells it out.
		if ep.Weight != nil || req.GetWeight() != 1 {
			ep.Weight = proto.Uint32(req.GetWeight())
		}
	}
	switch st := req.GetState(); st {
	case sluicev1.AdminState_ADMIN_STATE_UNSPECIFIED:
	case sluicev1.AdminState_ADMIN_STATE_ACTIVE:
		// ACTIVE is stored as UNSPECIFIED (its equal), the form snapshots
		// leave it in when they do not mention state, so that enable after
		// disable gives back a snapshot equal to the one before. An
		// endpoint already ACTIVE, spelt out or not, is left as it is.
		if ep.GetState() != sluicev1.AdminState_ADMIN_STATE_ACTIVE {
			ep.State = sluicev1.AdminState_ADMIN_STATE_UNSPECIFIED
		}
	default:
		ep.State = st
	}
}

// updateComment is the history comment of an UpdateEndpoint that gives none:
// the sluicectl command that makes the edit, or both of them joined by "; ".
func updateComment(req *sluicev1.UpdateEndpointRequest) string {
	target := req.GetCluster() + "/" + req.GetEndpoint()
	var parts []string
	if req.Weight != nil {
		parts = append(parts, fmt.Sprintf("set-weight %s %d", target, req.GetWeight()))
	}
	switch req.GetState() {
	case sluicev1.AdminState_ADMIN_STATE_ACTIVE:
		parts = append(parts, "enable "+target)
	case sluicev1.AdminState_ADMIN_STATE_DRAINING:
		parts = append(parts, "drain "+target)
	case sluicev1.AdminState_ADMIN_STATE_DISABLED:
		parts = append(parts, "disable "+target)
	}
	return strings.Join(parts, "; ")
}

// findEndpoint returns the endpoint named cluster/endpoint in snap (the
// message itself, to edit in place), or a NOT_FOUND status that helps the
// caller find the right name.
func findEndpoint(snap *sluicev1.Snapshot, cluster, endpoint string) (*sluicev1.Endpoint, error) {
	var names []string
	for _, c := range snap.GetClusters() {
		if c.GetName() != cluster {
			names = append(names, c.GetName())
			continue
		}
		var eps []string
		for _, ep := range c.GetEndpoints() {
			if ep.GetName() == endpoint {
				return ep, nil
			}
			eps = append(eps, ep.GetName())
		}
		return nil, noEndpoint(cluster, endpoint, eps)
	}
	if near := snapshot.ClosestName(cluster, names); near != "" {
		return nil, status.Errorf(codes.NotFound, "cluster %q not found, did you mean %q?", cluster, near)
	}
	return nil, status.Errorf(codes.NotFound, "cluster %q not found (%s)", cluster, snapshot.NameList("the snapshot has", "the snapshot has none", names))
}

// UnknownEndpoint is NOT_FOUND, in UpdateEndpoint's words, when cluster
// has no endpoint named endpoint in any group's snapshot or rollout of
// cfg; nil when it has.
func UnknownEndpoint(cfg *sluicev1.FleetConfig, cluster, endpoint string) error {
	eps := groups.EndpointNames(cfg, cluster)
	if slices.Contains(eps, endpoint) {
		return nil
	}
	return noEndpoint(cluster, endpoint, eps)
}

// NotInGroup is NOT_FOUND for a cluster that group g's snapshot and its
// rollout's lack, though another group's may have it: the cluster of g's
// its name is a likely typo of, else the clusters g has.
func NotInGroup(g *sluicev1.Group, cluster string) error {
	names := groups.ClusterNames(&sluicev1.FleetConfig{Groups: []*sluicev1.Group{g}})
	if near := snapshot.ClosestName(cluster, names); near != "" {
		return status.Errorf(codes.NotFound, "group %q has no cluster %q, did you mean %q?", g.GetName(), cluster, near)
	}
	return status.Errorf(codes.NotFound, "group %q has no cluster %q (%s)", g.GetName(), cluster, snapshot.NameList("it has", "it has none", names))
}

// noEndpoint is NOT_FOUND for endpoint: the endpoint of cluster its name
// is a likely typo of, else the endpoints cluster has.
func noEndpoint(cluster, endpoint string, eps []string) error {
	if near := snapshot.ClosestName(endpoint, eps); near != "" {
		return status.Errorf(codes.NotFound, "cluster %q has no endpoint %q, did you mean %q?", cluster, endpoint, near)
	}
	return status.Errorf(codes.NotFound, "cluster %q has no endpoint %q (%s)", cluster, endpoint, snapshot.NameList("it has", "it has none", eps))
}

// write is one request to store a new version: which group it changes,
// who asks, why, and how to make the group's snapshot from the current one.
type write struct {
	op    string // names the call in the log: "apply"
	done  string // the log message when a version is stored: "applied"
	group string
	// selector, when set, becomes the group's selector, creating the group
	// when it does not exist. Without it, a missing group is NOT_FOUND.
	selector *string
	// remove deletes the group instead.
	remove bool
	author string
	// comment is kept in history.
	comment string
	dryRun  bool
	// ifVersion, when set, is the version the writer expects the group to
	// run; any other fails the call and stores nothing.
	ifVersion *uint64
	// next, when set, returns the group's snapshot to store on top of g,
	// which it must not modify, or the status to fail the call with. It is
	// called once per attempt, since a concurrent writer may change g
	// between attempts.
	next func(g *sluicev1.Group) (*sluicev1.Snapshot, error)
	// canary, with next, starts a staged rollout of next's snapshot
	// instead of replacing the group's snapshot.
	canary *sluicev1.Canary
	// endpointEdit marks next as an edit of one endpoint, which may be
	// made while the group has a rollout (editRollout then makes it to
	// the rollout's snapshot too, so a drain during a canary holds for
	// all).
	endpointEdit bool
	// after, in a dry run, is how many versions an earlier write of the
	// same call would have stored first: the version this one would be
	// comes after them.
	after uint64
	// alter, instead of next, changes the group's rollout: it returns the
	// changes, or the status to fail the call with.
	alter func(g *sluicev1.Group, next uint64) ([]snapshot.Change, error)
	// fp, when set, holds the fingerprint of the snapshot the caller
	// expects the version to send, so that a call works it out once.
	fp *fingerprint
	// fleet, instead of all of the above, changes what cfg holds beside
	// its groups (the revoked nodes) as the version next: it returns the
	// changes, or the status to fail the call with.
	fleet func(cfg *sluicev1.FleetConfig, next uint64) ([]string, error)
}

// fingerprint is a snapshot's snapshot.Fingerprint, worked out when first
// asked for: for a big snapshot it costs about as much as a diff.
type fingerprint struct {
	snap *sluicev1.Snapshot
	sum  []byte
}

// of is snap's fingerprint, p's when snap is p's snapshot.
func (p *fingerprint) of(snap *sluicev1.Snapshot) []byte {
	if p == nil || snap != p.snap {
		sum := snapshot.Fingerprint(snap)
		return sum[:]
	}
	if p.sum == nil {
		sum := snapshot.Fingerprint(snap)
		p.sum = sum[:]
	}
	return p.sum
}

// put stores w as a new version with a compare-and-swap on the current
// one, retrying when another writer stores a version in between, so the
// changes recorded are the diff from the version actually replaced. A write
// that changes nothing is not stored (changed false); with dryRun nothing
// is stored and the response tells the version the call would create.
func (s *Server) put(ctx context.Context, w write) (*sluicev1.ApplyResponse, error) {
	var free uint64 // the lowest number the store gives, once it said (NumberTakenError)
	for range maxApplyAttempts {
		cur, err := s.store.Current(ctx)
		if err != nil {
			return nil, storeStatus(err)
		}
		base := cur.Info.GetVersion()
		cfg := proto.Clone(cur.Config).(*sluicev1.FleetConfig)
		g := groups.Find(cfg, w.group)
		if w.ifVersion != nil && *w.ifVersion != g.GetVersion() {
			// A conflict below also lands here on the next attempt: the
			// version moved, which is what the caller asked to be told.
			s.log.Info(w.op+" refused: version moved", "group", w.group, "version", g.GetVersion(), "if_version", *w.ifVersion, "author", w.author)
			if *w.ifVersion > base {
				return nil, status.Errorf(codes.FailedPrecondition,
					"the current version%s is %d, not %d: no version %d was stored yet (the newest is %d); nothing stored",
					ofGroup(w.group), g.GetVersion(), *w.ifVersion, *w.ifVersion, base)
			}
			if *w.ifVersion > g.GetVersion() {
				// Version numbers run across groups: a newer one is
				// another group's, not a write to this one since.
				return nil, status.Errorf(codes.FailedPrecondition,
					"the current version%s is %d, not %d, which is newer: versions of other groups count too (history --group %s lists this one's); nothing stored",
					ofGroup(w.group), g.GetVersion(), *w.ifVersion, groupOrDefault(w.group))
			}
			return nil, status.Errorf(codes.FailedPrecondition,
				"the current version%s is %d, not %d: someone stored a version since; nothing stored", ofGroup(w.group), g.GetVersion(), *w.ifVersion)
		}
		next := max(base+1, free)
		if w.dryRun {
			next += w.after
		}
		changes, structured, err := s.edit(cfg, w, next)
		if err != nil {
			s.log.Info(w.op+" refused", "group", w.group, "version", base, "author", w.author, "dry_run", w.dryRun, "err", err)
			return nil, err
		}
		g = groups.Find(cfg, w.group)
		if len(changes) == 0 {
			s.log.Info(w.op+" unchanged", "group", w.group, "version", g.GetVersion(), "author", w.author, "dry_run", w.dryRun)
			return &sluicev1.ApplyResponse{Version: g.GetVersion(), Group: w.group, GroupVersion: g.GetVersion()}, nil
		}
		if w.dryRun {
			s.log.Info(w.op+" dry run", "group", w.group, "version", base, "author", w.author, "changes", len(changes))
			return &sluicev1.ApplyResponse{Version: next, Changed: true, Changes: changes, ResourceChanges: structured,
				Group: w.group, GroupVersion: g.GetVersion()}, nil
		}
		rec := store.Record{
			Config:  cfg,
			Group:   w.group,
			Author:  w.author,
			Comment: w.comment,
			Changes: changes,
			Version: next,
		}
		if sent := sentSnapshot(cfg, w.group, next); sent != nil {
			rec.Fingerprint = w.fp.of(sent) // none when the group is deleted
		}
		info, changed, err := s.store.Put(ctx, base, rec)
		if errors.Is(err, store.ErrConflict) {
			continue // someone stored a version since Current: diff again
		}
		if taken := (*store.NumberTakenError)(nil); errors.As(err, &taken) {
			// The store went back; next was given before it did, and
			// nodes may run what it meant then. Number it afresh.
			s.log.Warn(w.op+": numbering the version above those stored before the store went back",
				"group", w.group, "taken", taken.Version, "version", taken.Next, "store_current", taken.Current)
			free = taken.Next
			continue
		}
		if err != nil {
			return nil, storeStatus(err)
		}
		if !changed {
			// Equal as bytes though not by proto.Equal; nothing new.
			s.log.Info(w.op+" unchanged", "group", w.group, "version", info.GetVersion(), "author", w.author)
			return &sluicev1.ApplyResponse{Version: info.GetVersion(), Group: w.group, GroupVersion: g.GetVersion()}, nil
		}
		s.log.Info(w.done, "group", w.group, "version", info.GetVersion(), "author", w.author,
			"comment", w.comment, "changes", len(changes))
		return &sluicev1.ApplyResponse{Version: info.GetVersion(), Changed: true, Changes: changes, ResourceChanges: structured,
			Group: w.group, GroupVersion: g.GetVersion()}, nil
	}
	return nil, status.Error(codes.Aborted, "too many concurrent writes; try again")
}

// edit makes w's change to cfg, which is the caller's to modify, as the
// version next, and returns what changed: nothing when the write would
// store nothing new.
func (s *Server) edit(cfg *sluicev1.FleetConfig, w write, next uint64) ([]string, []*sluicev1.ResourceChange, error) {
	if w.fleet != nil {
		changes, err := w.fleet(cfg, next)
		return changes, nil, err
	}
	var diff []snapshot.Change
	i := slices.IndexFunc(cfg.Groups, func(g *sluicev1.Group) bool { return g.GetName() == w.group })
	var before *groups.Set // the groups that place the nodes now, when w may move them
	if w.remove || w.selector != nil {
		var err error
		if before, err = groups.Compile(cfg); err != nil {
			return nil, nil, status.Error(codes.Internal, err.Error())
		}
	}
	if w.remove {
		if i < 0 {
			return nil, nil, noGroup(cfg, w.group, false)
		}
		deleted := cfg.Groups[i]
		cfg.Groups = slices.Delete(cfg.Groups, i, i+1)
		after, err := groups.Compile(cfg)
		if err != nil {
			return nil, nil, status.Error(codes.Internal, err.Error())
		}
		moves, err := s.checkPlacement(before, after)
		if err != nil {
			return nil, nil, err
		}
		fields := append(moveFields(w.group, moves, true), inheritFields(cfg, deleted, moves)...)
		diff = append(diff, snapshot.Change{Op: '-', Kind: "group", Name: w.group, Fields: fields})
		return changeLines(diff), resourceChanges(diff), nil
	}
	created := i < 0
	var g *sluicev1.Group
	if created {
		if w.selector == nil {
			// Only an apply can create a group (sluicectl diff is one,
			// dry): an endpoint edit or a rollback has nothing to put in it.
			return nil, nil, noGroup(cfg, w.group, w.op == "apply")
		}
		g = &sluicev1.Group{Name: w.group, Snapshot: &sluicev1.Snapshot{}}
		cfg.Groups = append(cfg.Groups, g)
		slices.SortFunc(cfg.Groups, func(a, b *sluicev1.Group) int { return cmp.Compare(a.GetName(), b.GetName()) })
	} else {
		g = cfg.Groups[i]
	}
	if w.selector != nil {
		sel, err := groups.Parse(*w.selector)
		if err != nil {
			return nil, nil, badRequest(snapshot.Errors{{Path: "selector", Message: err.Error()}})
		}
		switch {
		case created:
			diff = append(diff, snapshot.Change{Op: '+', Kind: "group", Name: w.group, Fields: []string{"selector " + quoteSelector(sel.String())}})
		case sel.String() != g.GetSelector():
			diff = append(diff, snapshot.Change{Op: '~', Kind: "group", Name: w.group,
				Fields: []string{"selector " + quoteSelector(g.GetSelector()) + " -> " + quoteSelector(sel.String())}})
		}
		g.Selector = sel.String()
	}
	if w.alter != nil {
		ch, err := w.alter(g, next)
		if err != nil {
			return nil, nil, err
		}
		diff = append(diff, ch...)
	}
	if w.next != nil {
		if r := g.GetRollout(); r != nil && !w.endpointEdit {
			return nil, nil, status.Errorf(codes.FailedPrecondition,
				"group %s has a rollout of version %d (%s); finish it, or end it with \"sluicectl rollout abort\", first; nothing stored",
				g.GetName(), r.GetVersion(), rolloutStateText(r.GetState()))
		}
		snap, err := w.next(g)
		if err != nil {
			return nil, nil, err
		}
		changes := snapshot.Diff(g.GetSnapshot(), snap)
		switch {
		case len(changes) == 0:
			// The same snapshot, or one that only writes out (or leaves
			// out) defaults: nodes would be sent nothing new.
		case w.canary != nil:
			ch, err := s.startRollout(g, snap, changes, w, next)
			if err != nil {
				return nil, nil, err
			}
			diff = append(diff, ch...)
		default:
			diff = append(diff, changes...)
			g.Snapshot, g.Version = snap, next
		}
	}
	set, err := groups.Compile(cfg)
	if err != nil {
		return nil, nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if before != nil {
		moves, err := s.checkPlacement(before, set)
		if err != nil {
			return nil, nil, err
		}
		if i := slices.IndexFunc(diff, func(c snapshot.Change) bool { return c.Kind == "group" && c.Name == w.group }); i >= 0 {
			diff[i].Fields = append(diff[i].Fields, moveFields(w.group, moves, g.GetVersion() != 0 || g.GetRollout() != nil)...)
		}
	}
	return changeLines(diff), resourceChanges(diff), nil
}

// move is a connected node that a change to the groups puts in another.
type move struct{ node, from, to string }

// checkPlacement returns the connected nodes that new groups (after) put in
// another group than the current ones (before), sorted by node. It refuses
// groups that would leave a connected node in no group: in two groups at
// once, or, when it is in one now, in none. Such a node would be sent
// nothing new.
func (s *Server) checkPlacement(before, after *groups.Set) ([]move, error) {
	var orphans []string
	var now string
	var moves []move
	for _, n := range s.nodes.Nodes() {
		if !n.GetConnected() {
			continue
		}
		if both := after.Overlap(n.GetLabels()); both != nil {
			_, problem := after.Of(n.GetLabels())
			return nil, status.Errorf(codes.FailedPrecondition, "node %s would be in two groups: %s; make the selectors exclusive; nothing stored", n.GetId(), problem)
		}
		from, _ := before.Of(n.GetLabels())
		to, _ := after.Of(n.GetLabels())
		switch {
		case from != "" && to == "":
			orphans = append(orphans, n.GetId())
			now = from
		case from != to:
			moves = append(moves, move{node: n.GetId(), from: from, to: to})
		}
	}
	if len(orphans) == 0 {
		slices.SortFunc(moves, func(a, b move) int { return cmp.Compare(a.node, b.node) })
		return moves, nil
	}
	slices.Sort(orphans)
	if len(orphans) == 1 {
		return nil, status.Errorf(codes.FailedPrecondition,
			"connected node %s of group %s would be in no group: no selector would match its labels, so it would get no new version; "+
				"give a group a selector that takes it first, or stop it; nothing stored", orphans[0], now)
	}
	return nil, status.Errorf(codes.FailedPrecondition,
		"connected nodes %s and %d more of group %s would be in no group: no selector would match their labels, so they would get no new version; "+
			"give a group a selector that takes them first, or stop them; nothing stored", orphans[0], len(orphans)-1, now)
}

// moveFields says, on the change line of group, which connected nodes it
// takes from other groups and which go to others: a change of selector
// changes what those nodes run. hasSnapshot is false for a group nothing
// was applied to, whose new nodes keep what they run until it has one.
func moveFields(group string, moves []move, hasSnapshot bool) []string {
	var out []string
	var took bool
	for _, dir := range []struct {
		verb string
		pick func(m move) (other string, ok bool)
	}{
		{"takes connected %s from %s", func(m move) (string, bool) { return m.from, m.to == group }},
		{"gives connected %s to %s", func(m move) (string, bool) { return m.to, m.from == group }},
	} {
		byOther := map[string][]string{}
		for _, m := range moves {
			if other, ok := dir.pick(m); ok {
				byOther[other] = append(byOther[other], m.node)
			}
		}
		for _, other := range slices.Sorted(maps.Keys(byOther)) {
			ids := byOther[other]
			what := "node " + ids[0]
			if len(ids) > 1 {
				what = "nodes " + snapshot.ListNames(ids)
			}
			if other == "" { // taken from no group (none is given to none)
				out = append(out, fmt.Sprintf("takes connected %s, which no group took", what))
			} else {
				out = append(out, fmt.Sprintf(dir.verb, what, other))
			}
			took = took || strings.HasPrefix(dir.verb, "takes")
		}
	}
	if took && !hasSnapshot {
		out = append(out, "nothing is applied to it yet: the nodes it takes keep what they run until an apply --group "+group)
	}
	return out
}

// inheritFields says what the connected nodes of deleted, which moves
// gives to other groups of cfg, run once it is gone: each group's
// snapshot, as changes from deleted's, or what they ran when that group
// has nothing applied; and that deleted's rollout ends with it.
func inheritFields(cfg *sluicev1.FleetConfig, deleted *sluicev1.Group, moves []move) []string {
	var to []string
	for _, m := range moves {
		if m.from == deleted.GetName() && !slices.Contains(to, m.to) {
			to = append(to, m.to)
		}
	}
	slices.Sort(to)
	var out []string
	for _, name := range to {
		g := groups.Find(cfg, name)
		switch {
		case g.GetVersion() == 0:
			out = append(out, fmt.Sprintf("nothing is applied to %s yet: the nodes it takes keep what they run", name))
		case deleted.GetVersion() == 0:
			out = append(out, fmt.Sprintf("the nodes %s takes get its version %d", name, g.GetVersion()))
		default:
			if d := snapshot.Diff(deleted.GetSnapshot(), g.GetSnapshot()); len(d) > 0 {
				out = append(out, fmt.Sprintf("the nodes %s takes run its version %d instead (%s)", name, g.GetVersion(), strings.Join(changeLines(d), ", ")))
			}
		}
	}
	if r := deleted.GetRollout(); r != nil {
		out = append(out, fmt.Sprintf("its rollout of version %d (%s) ends with it", r.GetVersion(), rolloutStateText(r.GetState())))
	}
	return out
}

func quoteSelector(sel string) string {
	if sel == "" {
		return `"" (every node no other group takes)`
	}
	return strconv.Quote(sel)
}

// noGroup is the NOT_FOUND for a group cfg does not have (unknownName);
// with create, for an apply that could have created it, it says how,
// unless the name is a likely typo of one there is.
func noGroup(cfg *sluicev1.FleetConfig, name string, create bool) error {
	names := groupNames(cfg)
	if !create || snapshot.ClosestName(name, names) != "" {
		return unknownGroup(name, "does not exist", names)
	}
	msg := fmt.Sprintf("group %q does not exist (%s); give a selector to create it", name, snapshot.NameList("the groups are", "there is no group", names))
	if name == groups.Default {
		msg += ` (--selector '' makes it take every node no other group takes, as at the start)`
	}
	return status.Error(codes.NotFound, msg)
}

// unknownGroup is unknownName for a group.
func unknownGroup(name, missing string, names []string) error {
	return unknownName("group", name, missing, names, "the groups are", "there is no group")
}

func groupNames(cfg *sluicev1.FleetConfig) []string {
	var names []string
	for _, g := range cfg.GetGroups() {
		names = append(names, g.GetName())
	}
	return names
}

func groupOrDefault(name string) string {
	if name == "" {
		return groups.Default
	}
	return name
}

// toGroup is " to group NAME", or nothing for the default group.
func toGroup(name string) string {
	if name == groups.Default {
		return ""
	}
	return " to group " + name
}

// ofGroup is " of group NAME" for groups other than the default, which
// users of a fleet without groups never need to hear about.
func ofGroup(name string) string {
	if name == groups.Default {
		return ""
	}
	return " of group " + name
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
		Group:    req.GetGroup(), // a bad name is refused, not looked up
		Selector: req.Selector,
	}
	return requestStatus(req, shallow.ValidateAll())
}

// requestStatus turns the error of a request's PGV ValidateAll into
// INVALID_ARGUMENT with a BadRequest detail naming each faulty field of req
// by its proto name; nil stays nil.
func requestStatus(req proto.Message, err error) error {
	if err == nil {
		return nil
	}
	var faults snapshot.Errors
	var multi interface{ AllErrors() []error }
	if errors.As(err, &multi) {
		for _, e := range multi.AllErrors() {
			var fe interface {
				Field() string
				Reason() string
			}
			if errors.As(e, &fe) {
				path := protoFieldName(req, fe.Field())
				faults = append(faults, snapshot.FieldError{Path: path, Message: fieldReason(req, path, fe.Reason())})
			}
		}
	}
	if len(faults) == 0 {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return badRequest(faults)
}

// fieldReason is what a user is told about field path of req, which PGV
// refused for reason: for a group name, what a valid one is, where PGV
// would quote its regular expression; for a text too long or empty, so in
// characters, where PGV counts "runes".
func fieldReason(req proto.Message, path, reason string) string {
	isGroup := path == "group"
	switch req.(type) {
	case *sluicev1.SetGroupRequest, *sluicev1.DeleteGroupRequest:
		isGroup = path == "name"
	}
	if !isGroup {
		return lengthReason(req, path, reason)
	}
	if name, ok := stringField(req, path); ok {
		if err := groups.CheckName(name); err != nil {
			return err.Error()
		}
	}
	return reason
}

// stringField is the value of req's string field path (a top-level one);
// false when there is no such field.
func stringField(req proto.Message, path string) (string, bool) {
	fd := req.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(path))
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() {
		return "", false
	}
	return req.ProtoReflect().Get(fd).String(), true
}

// lengthReason words PGV's length rules for a string field path of req:
// "1100 characters, more than the 1024 allowed" for "value length must be
// at most 1024 runes", and "must not be empty" for "at least 1"; any other
// reason as it is.
func lengthReason(req proto.Message, path, reason string) string {
	if reason == "value length must be at least 1 runes" {
		return "must not be empty"
	}
	var most int
	if _, err := fmt.Sscanf(reason, "value length must be at most %d runes", &most); err != nil {
		return reason
	}
	text, ok := stringField(req, path)
	if !ok {
		return fmt.Sprintf("more than the %d characters allowed", most)
	}
	return fmt.Sprintf("%d characters, more than the %d allowed", utf8.RuneCountInString(text), most)
}

// badRequest is the INVALID_ARGUMENT for faults in a request's own fields
// (not its snapshot's): "invalid request: …", with each fault's path.
func badRequest(faults snapshot.Errors) error {
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

func changeLines(changes []snapshot.Change) []string {
	out := make([]string, 0, len(changes))
	for _, c := range changes {
		out = append(out, c.String())
	}
	return out
}

// changeOps names a snapshot.Change's Op for scripts.
var changeOps = map[byte]string{'+': "added", '-': "removed", '~': "changed"}

func resourceChanges(changes []snapshot.Change) []*sluicev1.ResourceChange {
	out := make([]*sluicev1.ResourceChange, 0, len(changes))
	for _, c := range changes {
		out = append(out, &sluicev1.ResourceChange{Op: changeOps[c.Op], Kind: c.Kind, Name: c.Name, Fields: c.Fields})
	}
	return out
}

// Get implements sluicev1.ConfigServiceServer: the snapshot of one group
// (default: "default"; with a version, the group it changed) in the
// current version or a given one. The info is
// that of the version that last changed the group's snapshot, when it is
// still kept. While the store cannot be reached, the current version is
// the one this control plane sends its nodes (current).
func (s *Server) Get(ctx context.Context, req *sluicev1.GetRequest) (*sluicev1.GetResponse, error) {
	if err := requestStatus(req, req.ValidateAll()); err != nil {
		return nil, err
	}
	var (
		v     *store.Version
		stale string
		err   error
	)
	if req.GetVersion() == 0 {
		v, stale, err = s.current(ctx)
	} else {
		v, err = s.store.Get(ctx, req.GetVersion())
		if errors.Is(err, store.ErrNotFound) {
			return nil, s.notKept(ctx, req.GetVersion())
		}
	}
	if err != nil {
		return nil, storeStatus(err)
	}
	name := groupOrDefault(req.GetGroup())
	if req.GetGroup() == "" && req.GetVersion() != 0 {
		// As rollback N: the group version N changed.
		name = groupOrDefault(v.Info.GetGroup())
	}
	g := groups.Find(v.Config, name)
	if g == nil {
		return nil, unknownGroup(name, fmt.Sprintf("does not exist in version %d", v.Info.GetVersion()), groupNames(v.Config))
	}
	if changed := groupOrDefault(v.Info.GetGroup()); g.GetVersion() == 0 && req.GetVersion() != 0 && changed != name {
		// Asked for a version that changed another group, before this
		// one had a snapshot: an empty one would read as one applied.
		return nil, status.Errorf(codes.NotFound, "group %q had no snapshot yet in version %d, which changed group %q (get --group %s --version %d shows it)",
			name, v.Info.GetVersion(), changed, changed, v.Info.GetVersion())
	}
	info, snap, r := v.Info, g.GetSnapshot(), g.GetRollout()
	var note string
	switch {
	case r != nil && req.GetVersion() != 0 && r.GetVersion() == req.GetVersion():
		// The version asked for names the snapshot the canaries were
		// sent, not the group's.
		snap = r.GetSnapshot()
	case g.GetVersion() != info.GetVersion():
		info = &sluicev1.VersionInfo{Version: g.GetVersion(), Group: name}
		// Not asked of a store that cannot be reached: it would keep
		// the call waiting again, to fail.
		if stale == "" {
			if gv, err := s.store.Get(ctx, g.GetVersion()); err == nil {
				info = gv.Info
			}
		}
		fallthrough
	default:
		if r != nil {
			note = rolloutNote(r)
		}
	}
	listRefusals(info)
	if !req.GetShowSecrets() {
		snap = snapshot.RedactSecrets(snap)
	}
	return &sluicev1.GetResponse{Info: info, Snapshot: snap, StoreUnreachable: stale, Rollout: note}, nil
}

// rolloutNote says, for Get of a group's snapshot, which version the
// group's staged rollout r has its canaries run, and where it stands.
func rolloutNote(r *sluicev1.Rollout) string {
	if r.GetState() == sluicev1.RolloutState_ROLLOUT_STATE_HALTED {
		return fmt.Sprintf("the rollout of version %d halted (%s): its canaries run this snapshot again; get --version %d prints the rollout's",
			r.GetVersion(), r.GetReason(), r.GetVersion())
	}
	if len(r.GetCanaries()) == 0 {
		return fmt.Sprintf("version %d is rolling out and waits for a canary to connect; get --version %d prints it", r.GetVersion(), r.GetVersion())
	}
	return fmt.Sprintf("version %d runs on its canaries (%s); get --version %d prints it",
		r.GetVersion(), snapshot.ListNames(r.GetCanaries()), r.GetVersion())
}

// History implements sluicev1.ConfigServiceServer. Current is the newest
// version, or with a group, the version that group's nodes run.
func (s *Server) History(ctx context.Context, req *sluicev1.HistoryRequest) (*sluicev1.HistoryResponse, error) {
	if err := requestStatus(req, req.ValidateAll()); err != nil {
		return nil, err
	}
	limit := int(req.GetLimit())
	if req.GetGroup() != "" {
		limit = 0 // filtered below
	}
	h, err := s.store.History(ctx, limit)
	if err != nil {
		return nil, storeStatus(err)
	}
	resp := &sluicev1.HistoryResponse{}
	if len(h) > 0 {
		resp.Current = h[0].GetVersion()
	}
	if req.GetGroup() != "" {
		h = slices.DeleteFunc(h, func(i *sluicev1.VersionInfo) bool { return groupOrDefault(i.GetGroup()) != req.GetGroup() })
		if n := int(req.GetLimit()); n > 0 && len(h) > n {
			h = h[:n]
		}
		// Of one group, the current version is the one its nodes run:
		// the version that last changed its snapshot.
		resp.Current = 0
		cur, err := s.store.Current(ctx)
		if err != nil {
			return nil, storeStatus(err)
		}
		g := groups.Find(cur.Config, req.GetGroup())
		if g == nil && len(h) == 0 {
			// A typo answered with an empty list reads as "nothing
			// happened to it".
			return nil, unknownGroup(req.GetGroup(), "does not exist, and no kept version changed it", groupNames(cur.Config))
		}
		resp.Current = g.GetVersion()
	}
	for _, info := range h {
		listRefusals(info)
	}
	resp.Versions = h
	return resp, nil
}

// maxRefusalsListed is how many refusals of one version History and Get
// list: a version a whole fleet refused would otherwise fill the answer
// with the same reason.
const maxRefusalsListed = 10

// listRefusals readies info, read from the store, to be answered: it keeps
// the earliest maxRefusalsListed refusals, and RefusedBy counts them all.
func listRefusals(info *sluicev1.VersionInfo) {
	info.RefusedBy = uint32(len(info.Refusals))
	info.Refusals = info.Refusals[:min(len(info.Refusals), maxRefusalsListed)]
}

// ListGroups implements sluicev1.ConfigServiceServer. While the store
// cannot be reached, the groups are those of the version this control
// plane sends its nodes (current).
func (s *Server) ListGroups(ctx context.Context, _ *sluicev1.ListGroupsRequest) (*sluicev1.ListGroupsResponse, error) {
	cur, stale, err := s.current(ctx)
	if err != nil {
		return nil, storeStatus(err)
	}
	resp := &sluicev1.ListGroupsResponse{Version: cur.Info.GetVersion(), StoreUnreachable: stale}
	byName := map[string]*sluicev1.GroupStatus{}
	for _, g := range cur.Config.GetGroups() {
		gs := &sluicev1.GroupStatus{
			Name:      g.GetName(),
			Selector:  g.GetSelector(),
			Version:   g.GetVersion(),
			Clusters:  uint32(len(g.GetSnapshot().GetClusters())),
			Listeners: uint32(len(g.GetSnapshot().GetListeners())),
		}
		if r := g.GetRollout(); r.GetState() == sluicev1.RolloutState_ROLLOUT_STATE_CANARY {
			// What discovery sends the canaries instead.
			gs.CanaryVersion, gs.Canaries = r.GetVersion(), r.GetCanaries()
		}
		byName[g.GetName()] = gs
		resp.Groups = append(resp.Groups, gs)
	}
	for _, n := range s.nodes.Nodes() {
		gs := byName[n.GetGroup()]
		if gs == nil || !n.GetConnected() {
			continue
		}
		gs.Nodes++
		if v := WantVersion(gs, n.GetId()); v != 0 && n.GetAckedVersion() == v {
			gs.Applied++ // a group with nothing applied has no version to apply
		}
	}
	return resp, nil
}

// WantVersion is the version node id of group g is sent, and runs once it
// applied it: the rollout's for a canary, else the group's (0: nothing
// applied to the group yet).
func WantVersion(g *sluicev1.GroupStatus, id string) uint64 {
	if g.GetCanaryVersion() != 0 && slices.Contains(g.GetCanaries(), id) {
		return g.GetCanaryVersion()
	}
	return g.GetVersion()
}

// SetGroup implements sluicev1.ConfigServiceServer.
func (s *Server) SetGroup(ctx context.Context, req *sluicev1.SetGroupRequest) (*sluicev1.ApplyResponse, error) {
	if err := requestStatus(req, req.ValidateAll()); err != nil {
		return nil, err
	}
	comment := req.GetComment()
	if comment == "" {
		comment = fmt.Sprintf("group %s selector %q", req.GetName(), req.GetSelector())
	}
	sel := req.GetSelector()
	return s.put(ctx, write{
		op: "set group", done: "group set", group: req.GetName(), selector: &sel,
		author: req.GetAuthor(), comment: comment, dryRun: req.GetDryRun(),
	})
}

// DeleteGroup implements sluicev1.ConfigServiceServer.
func (s *Server) DeleteGroup(ctx context.Context, req *sluicev1.DeleteGroupRequest) (*sluicev1.ApplyResponse, error) {
	if err := requestStatus(req, req.ValidateAll()); err != nil {
		return nil, err
	}
	comment := req.GetComment()
	if comment == "" {
		comment = "delete group " + req.GetName()
	}
	return s.put(ctx, write{
		op: "delete group", done: "group deleted", group: req.GetName(), remove: true,
		author: req.GetAuthor(), comment: comment, dryRun: req.GetDryRun(),
	})
}

// RevokeNode implements sluicev1.ConfigServiceServer. The revocation is
// stored as a version of no group; the control plane's Guard enforces it
// (auth.Guard.SetRevoked) once its replica publishes the version.
func (s *Server) RevokeNode(ctx context.Context, req *sluicev1.RevokeNodeRequest) (*sluicev1.ApplyResponse, error) {
	// The node id first: PGV would quote its regular expression.
	if err := pki.CheckNodeID(req.GetNodeId()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := requestStatus(req, req.ValidateAll()); err != nil {
		return nil, err
	}
	if !s.nodeCerts {
		return nil, status.Error(codes.FailedPrecondition, "this control plane speaks plain gRPC: nodes present no certificate to revoke (see README \"Secure setup\")")
	}
	id := req.GetNodeId()
	var again bool // revoked before
	resp, err := s.put(ctx, write{
		op: "revoke node", done: "node revoked", author: req.GetAuthor(),
		comment: cmp.Or(req.GetComment(), "revoke node "+id), dryRun: req.GetDryRun(),
		fleet: func(cfg *sluicev1.FleetConfig, next uint64) ([]string, error) {
			at := time.Now().Truncate(time.Second)
			r := &sluicev1.RevokedNode{NodeId: id, RevokedAt: timestamppb.New(at), Version: next}
			var i int
			i, again = slices.BinarySearchFunc(cfg.RevokedNodes, id, func(r *sluicev1.RevokedNode, id string) int { return strings.Compare(r.GetNodeId(), id) })
			change := "+ revoked node " + id
			if again {
				change = "~ revoked node " + id + " again"
				cfg.RevokedNodes[i] = r
			} else {
				cfg.RevokedNodes = slices.Insert(cfg.RevokedNodes, i, r)
			}
			return []string{fmt.Sprintf("%s: its certificates issued before %s are refused", change, at.UTC().Format(time.RFC3339))}, nil
		},
	})
	if err == nil && !again {
		if w := s.unseenNode(id); w != "" {
			resp.Warnings = append(resp.Warnings, w)
		}
	}
	return resp, err
}

// unseenNode warns of a node id no node of the fleet has: a typo would
// leave the node meant unrevoked, though a node away for longer than
// --forget-nodes-after is revoked rightly.
func (s *Server) unseenNode(id string) string {
	nodes, _ := s.fleet()
	ids := make([]string, 0, len(nodes))
	for _, n := range nodes {
		if n.GetId() == id {
			return ""
		}
		ids = append(ids, n.GetId())
	}
	slices.Sort(ids)
	seen := snapshot.NameList("it has seen", "it has seen none", ids)
	if near := snapshot.ClosestName(id, ids); near != "" {
		seen = fmt.Sprintf("did you mean %q?", near)
	}
	return fmt.Sprintf("node %q is not among the nodes this control plane has seen lately (%s); it is revoked all the same, "+
		"as a node away for longer than sluice-cp --forget-nodes-after would be: check the id", id, seen)
}

// ListRevokedNodes implements sluicev1.ConfigServiceServer: those of the
// current version, or, while the store cannot be reached, of the one this
// control plane sends its nodes.
func (s *Server) ListRevokedNodes(ctx context.Context, _ *sluicev1.ListRevokedNodesRequest) (*sluicev1.ListRevokedNodesResponse, error) {
	v, _, err := s.current(ctx)
	if err != nil {
		return nil, storeStatus(err)
	}
	return &sluicev1.ListRevokedNodesResponse{Nodes: v.Config.GetRevokedNodes()}, nil
}

// ListNodes implements sluicev1.ConfigServiceServer.
func (s *Server) ListNodes(context.Context, *sluicev1.ListNodesRequest) (*sluicev1.ListNodesResponse, error) {
	nodes, incomplete := s.fleet()
	return &sluicev1.ListNodesResponse{Nodes: nodes, Incomplete: incomplete}, nil
}

// fleet lists every replica's nodes, as ListNodes answers. When the other
// replicas' could not be read it lists this replica's, and incomplete
// says so and why.
func (s *Server) fleet() (nodes []*sluicev1.NodeStatus, incomplete string) {
	fl, ok := s.nodes.(FleetLister)
	if !ok {
		return s.nodes.Nodes(), ""
	}
	nodes, err := fl.FleetNodes()
	if err != nil {
		// With sluicectl's --cp naming several replicas, the one that
		// answered is not otherwise known: name it.
		this := "this replica's"
		if s.replica != "" {
			this = "those of " + s.replica + ", the replica that answered,"
		}
		incomplete = fmt.Sprintf("the nodes of other control-plane replicas could not be read (%v); only %s are listed", err, this)
	}
	return nodes, incomplete
}

// ListConns implements sluicev1.ConfigServiceServer: the records this
// replica keeps, newest first; none for a name that is nowhere is
// NOT_FOUND, as for GetStats (unknownNames). With replicas on one etcd,
// nodes report to the replica their streams are on; the answer names the
// other replicas that nodes (the one asked for, with a node filter) are
// connected to, whose records are kept there.
func (s *Server) ListConns(ctx context.Context, req *sluicev1.ListConnsRequest) (*sluicev1.ListConnsResponse, error) {
	if err := requestStatus(req, req.ValidateAll()); err != nil {
		return nil, err
	}
	nodes, incomplete := s.fleet()
	group := req.GetGroup()
	inGroup := func(n *sluicev1.NodeStatus) bool { return group == "" || n.GetGroup() == group }
	f := stats.Filter{
		NodeID:      req.GetNodeId(),
		Cluster:     req.GetCluster(),
		Endpoint:    req.GetEndpoint(),
		Listener:    req.GetListener(),
		Reasons:     req.GetReasons(),
		MinDuration: req.GetMinDuration().AsDuration(),
	}
	if group != "" {
		f.Nodes = map[string]bool{}
		for _, n := range nodes {
			if inGroup(n) {
				f.Nodes[n.GetId()] = true
			}
		}
	}
	recs := s.conns.List(f, int(req.GetLimit()))
	resp := &sluicev1.ListConnsResponse{Records: recs, Incomplete: incomplete}
	if len(recs) == 0 {
		ids := make([]string, 0, len(nodes))
		for _, n := range nodes {
			ids = append(ids, n.GetId())
		}
		err := s.unknownNames(ctx, filterNames{node: req.GetNodeId(), group: group, cluster: req.GetCluster(), endpoint: req.GetEndpoint(), listener: req.GetListener()}, ids, incomplete != "")
		if err != nil {
			return nil, err
		}
	}
	for _, n := range nodes {
		r := n.GetReplica()
		if n.GetConnected() && r != "" && r != s.replica && (req.GetNodeId() == "" || req.GetNodeId() == n.GetId()) && inGroup(n) && !slices.Contains(resp.ReportedElsewhere, r) {
			resp.ReportedElsewhere = append(resp.ReportedElsewhere, r)
		}
	}
	slices.Sort(resp.ReportedElsewhere)
	return resp, nil
}

// GetStats implements sluicev1.ConfigServiceServer: each node's latest view
// of its endpoints, by node id, filtered by node and cluster. A node that
// is gone stays, with connected false, as long as the fleet lists it
// (ListNodes). Nodes report to the replica their streams are on: one
// connected to another replica is listed, whatever the filter on clusters,
// with that replica's name and nothing else, since what it reported here,
// if anything, dates from before it moved.
func (s *Server) GetStats(ctx context.Context, req *sluicev1.GetStatsRequest) (*sluicev1.GetStatsResponse, error) {
	if s.views == nil {
		return nil, status.Error(codes.Unimplemented, "no endpoint stats on this server")
	}
	nodes := map[string]place{}
	fleet, incomplete := s.fleet()
	for _, n := range fleet {
		p := place{connected: n.GetConnected(), group: n.GetGroup()}
		if p.connected && n.GetReplica() != s.replica {
			p.elsewhere = n.GetReplica()
		}
		nodes[n.GetId()] = p
	}
	resp := &sluicev1.GetStatsResponse{Incomplete: incomplete}
	for _, v := range s.views.List(req.GetNodeId(), req.GetCluster()) {
		p, known := nodes[v.NodeID]
		if !known || p.elsewhere != "" {
			continue // forgotten by the fleet, or listed below
		}
		resp.Nodes = append(resp.Nodes, &sluicev1.NodeStats{
			NodeId:     v.NodeID,
			Connected:  p.connected,
			ReportedAt: timestamppb.New(v.ReportedAt),
			Endpoints:  v.Endpoints,
			Version:    v.Version,
			Group:      p.group,
		})
	}
	if len(resp.Nodes) == 0 {
		f := filterNames{node: req.GetNodeId(), cluster: req.GetCluster()}
		if err := s.unknownNames(ctx, f, slices.Collect(maps.Keys(nodes)), incomplete != ""); err != nil {
			return nil, err
		}
	}
	for id, p := range nodes {
		if p.elsewhere != "" && (req.GetNodeId() == "" || req.GetNodeId() == id) {
			resp.Nodes = append(resp.Nodes, &sluicev1.NodeStats{NodeId: id, Connected: true, Replica: p.elsewhere, Group: p.group})
		}
	}
	slices.SortFunc(resp.Nodes, func(a, b *sluicev1.NodeStats) int { return cmp.Compare(a.GetNodeId(), b.GetNodeId()) })
	return resp, nil
}

// filterNames are the names a read of stats or records filters on.
type filterNames struct{ node, group, cluster, endpoint, listener string }

// unknownNames is the NOT_FOUND for a filter of stats or connection
// records that found none here and names a node the fleet does not know
// (fleet: its ids; not checked when incomplete), a group that does not
// exist, or a cluster, an endpoint or a listener no group's snapshot or
// rollout has: a typo, which an empty answer would pass off as "no
// traffic yet". Every replica answers so, from the same etcd; while etcd
// cannot be reached, from the configuration this replica sends its nodes
// (WithPublished).
func (s *Server) unknownNames(ctx context.Context, f filterNames, fleet []string, incomplete bool) error {
	if f.node != "" && !incomplete && !slices.Contains(fleet, f.node) {
		slices.Sort(fleet)
		return unknownName("node", f.node, "is not in the fleet", fleet, "its nodes are", "no node is in it")
	}
	if f.group == "" && f.cluster == "" && f.endpoint == "" && f.listener == "" {
		return nil
	}
	cur, _, err := s.current(ctx)
	if err != nil {
		return nil // the answer stands without the check
	}
	if f.group != "" && groups.Find(cur.Config, f.group) == nil {
		return unknownGroup(f.group, "does not exist", groupNames(cur.Config))
	}
	clusters := groups.ClusterNames(cur.Config)
	switch {
	case f.cluster != "" && !slices.Contains(clusters, f.cluster):
		return unknownName("cluster", f.cluster, "is in no group's snapshot", clusters, "the clusters are", "no group's snapshot has a cluster yet")
	case f.cluster != "" && f.endpoint != "":
		if err := UnknownEndpoint(cur.Config, f.cluster, f.endpoint); err != nil {
			return err
		}
	case f.endpoint != "":
		eps := groups.EndpointNames(cur.Config, "")
		if slices.Contains(eps, f.endpoint) {
			break
		}
		if near := snapshot.ClosestName(f.endpoint, eps); near != "" {
			return status.Errorf(codes.NotFound, "no cluster of any group's snapshot has an endpoint %q, did you mean %q?", f.endpoint, near)
		}
		return status.Errorf(codes.NotFound, "no cluster of any group's snapshot has an endpoint %q", f.endpoint)
	}
	if f.listener == "" {
		return nil
	}
	if listeners := groups.ListenerNames(cur.Config); !slices.Contains(listeners, f.listener) {
		return unknownName("listener", f.listener, "is in no group's snapshot", listeners, "the listeners are", "no group's snapshot has a listener yet")
	}
	return nil
}

// unknownName is NOT_FOUND for the kind's name, which is not among names:
// "cluster "wbe" is in no group's snapshot" (missing), then the name it
// is a likely typo of, else the names (nameList's has and none).
func unknownName(kind, name, missing string, names []string, has, none string) error {
	return status.Error(codes.NotFound, snapshot.UnknownName(kind, name, missing, names, has, none))
}

// place is where GetStats finds a node of the fleet.
type place struct {
	connected bool
	elsewhere string // the replica the node reports to, if not this one
	group     string
}

// ShutdownSessions implements sluicev1.ConfigServiceServer. The endpoint
// must be in the current snapshot (NOT_FOUND otherwise, naming what is
// missing; FAILED_PRECONDITION before the first apply). Every node
// connected for commands closes its connections to it and says how many,
// or why it could not; a node that does not answer in time, or that the
// fleet lists as connected without a command stream, gets an error result.
// Results are sorted by node id.
func (s *Server) ShutdownSessions(ctx context.Context, req *sluicev1.ShutdownSessionsRequest) (*sluicev1.ShutdownSessionsResponse, error) {
	if s.cmds == nil {
		return nil, status.Error(codes.Unimplemented, "no command channel to nodes on this server")
	}
	if err := requestStatus(req, req.ValidateAll()); err != nil {
		return nil, err
	}
	cur, err := s.store.Current(ctx)
	if err != nil {
		return nil, storeStatus(err)
	}
	if cur.Info.GetVersion() == 0 {
		return nil, status.Error(codes.FailedPrecondition, "no snapshot has been applied yet, so there is no endpoint to shut down")
	}
	// The endpoint must be in some group's snapshot (the one asked for).
	among := cur.Config.GetGroups()
	if name := req.GetGroup(); name != "" {
		g := groups.Find(cur.Config, name)
		if g == nil {
			return nil, noGroup(cur.Config, name, false)
		}
		among = []*sluicev1.Group{g}
	}
	var missing []string     // why each group's snapshot lacks it
	has := map[string]bool{} // the groups whose snapshot has the endpoint
	for _, g := range among {
		_, err := findEndpoint(g.GetSnapshot(), req.GetCluster(), req.GetEndpoint())
		if err == nil {
			has[g.GetName()] = true
			continue
		}
		missing = append(missing, fmt.Sprintf("group %q: %s", g.GetName(), status.Convert(err).Message()))
		switch {
		case len(cur.Config.GetGroups()) == 1:
			return nil, err // a fleet without groups: the snapshot's own words
		case req.GetGroup() != "":
			return nil, status.Error(codes.NotFound, missing[0])
		}
	}
	if len(has) == 0 && len(missing) > 0 {
		if len(missing) > snapshot.MaxListedNames {
			missing = append(missing[:snapshot.MaxListedNames], fmt.Sprintf("and %d more groups", len(missing)-snapshot.MaxListedNames))
		}
		return nil, status.Errorf(codes.NotFound, "no group's snapshot has endpoint %q in cluster %q (%s)",
			req.GetEndpoint(), req.GetCluster(), strings.Join(missing, "; "))
	}
	start := time.Now()
	// A node of a group whose snapshot lacks the endpoint cannot have it:
	// its "no cluster" is no failure, and it is left out of the answer.
	// (A node that has none, or more than one, may run anything.)
	concerned := func(n *sluicev1.NodeStatus) bool { return n.GetGroup() == "" || has[n.GetGroup()] }
	var only func(*sluicev1.NodeStatus) bool // --group: its nodes alone
	if group := req.GetGroup(); group != "" {
		only = func(n *sluicev1.NodeStatus) bool { return n.GetGroup() == group }
	}
	results, err := s.runOnFleet(ctx, &sluicev1.Command{Action: &sluicev1.Command_ShutdownSessions{ShutdownSessions: &sluicev1.ShutdownSessionsCommand{
		Cluster: req.GetCluster(), Endpoint: req.GetEndpoint(),
	}}}, concerned, only)
	if err != nil {
		s.log.Warn("sessions not shut down", "cluster", req.GetCluster(), "endpoint", req.GetEndpoint(), "err", err)
		return nil, err
	}
	var closed uint64
	failed := 0
	for _, r := range results {
		closed += r.GetClosed()
		if r.GetError() != "" {
			failed++
		}
	}
	s.log.Info("sessions shut down", "cluster", req.GetCluster(), "endpoint", req.GetEndpoint(), "group", req.GetGroup(),
		"nodes", len(results), "failed", failed, "closed", closed, "took", time.Since(start).Round(time.Millisecond))
	return &sluicev1.ShutdownSessionsResponse{Results: results}, nil
}

// runOnFleet runs the action of cmd on every connected node: on this
// replica's through the command streams, on other replicas' through the
// relay, all at once. It returns one result per node the fleet lists as
// connected, or that answered, sorted by node id: a node that no replica
// answered for gets an error result saying why. When the other replicas'
// nodes cannot be listed it runs nothing and fails with UNAVAILABLE: the
// command would reach an unknown part of the fleet, and its answer would
// not show which. The failures of nodes that concerned says the command
// is not for are left out. With only, the command goes to the connected
// nodes only takes (Command.nodes names them), and the answer has theirs
// alone.
func (s *Server) runOnFleet(ctx context.Context, cmd *sluicev1.Command, concerned, only func(*sluicev1.NodeStatus) bool) ([]*sluicev1.CommandResult, error) {
	var nodes []*sluicev1.NodeStatus
	if fl, ok := s.nodes.(FleetLister); ok && s.relay != nil {
		var err error
		if nodes, err = fl.FleetNodes(); err != nil {
			return nil, unavailable("FLEET_UNREADABLE", "cannot learn which nodes the other replicas have (%v), so the command was sent to no node", err)
		}
	} else {
		nodes = s.nodes.Nodes()
	}
	var targets map[string]bool // nil: every node
	if only != nil {
		targets = map[string]bool{}
		cmd = &sluicev1.Command{Action: cmd.GetAction()}
		nodes = slices.DeleteFunc(slices.Clone(nodes), func(n *sluicev1.NodeStatus) bool { return !only(n) })
		for _, n := range nodes {
			if n.GetConnected() {
				targets[n.GetId()] = true
				cmd.Nodes = append(cmd.Nodes, n.GetId())
			}
		}
		if len(targets) == 0 {
			return nil, nil // no Nodes would mean every node
		}
	}
	elsewhere := map[string][]string{} // replica: the nodes the fleet lists on it
	if s.relay != nil {
		for _, n := range nodes {
			if r := n.GetReplica(); n.GetConnected() && r != "" && r != s.replica {
				elsewhere[r] = append(elsewhere[r], n.GetId())
			}
		}
	}
	var (
		mu  sync.Mutex
		all []*sluicev1.CommandResult
		wg  sync.WaitGroup
	)
	for replica, ids := range elsewhere {
		wg.Go(func() {
			send := cmd
			if targets != nil {
				send = &sluicev1.Command{Action: cmd.GetAction(), Nodes: ids} // its own
			}
			res, err := s.relay.Send(ctx, replica, send)
			if err != nil {
				res = nil
				for _, id := range ids {
					res = append(res, &sluicev1.CommandResult{NodeId: id, Error: fmt.Sprintf("on replica %s: %v", replica, err)})
				}
			}
			mu.Lock()
			all = append(all, res...)
			mu.Unlock()
		})
	}
	local := s.cmds.Run(ctx, func(c *sluicev1.Command) { c.Action, c.Nodes = cmd.GetAction(), cmd.GetNodes() })
	wg.Wait()
	// A node that moved while the command went may be answered for
	// twice: a success wins. A replica older than Command.nodes runs it
	// on all its nodes: only the targets' results are given.
	byNode := make(map[string]*sluicev1.CommandResult, len(nodes))
	for _, r := range append(all, local...) {
		if cur, ok := byNode[r.GetNodeId()]; (!ok || cur.GetError() != "") && (targets == nil || targets[r.GetNodeId()]) {
			byNode[r.GetNodeId()] = r
		}
	}
	for _, n := range nodes {
		if _, ok := byNode[n.GetId()]; n.GetConnected() && !ok {
			byNode[n.GetId()] = &sluicev1.CommandResult{NodeId: n.GetId(), Error: "connected, but not for commands"}
		}
		if r := byNode[n.GetId()]; r != nil && r.GetError() != "" && !concerned(n) {
			delete(byNode, n.GetId())
		}
	}
	results := make([]*sluicev1.CommandResult, 0, len(byNode))
	for _, r := range byNode {
		results = append(results, r)
	}
	slices.SortFunc(results, func(a, b *sluicev1.CommandResult) int { return cmp.Compare(a.GetNodeId(), b.GetNodeId()) })
	return results, nil
}

// unavailable is an UNAVAILABLE status of the control plane's own, which
// carries an ErrorInfo with reason: the detail tells a client that the
// control plane answered, and that what it needs behind it did not, not
// that the client's connection to it failed.
func unavailable(reason, format string, args ...any) error {
	st := status.Newf(codes.Unavailable, format, args...)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "sluice"}); err == nil {
		st = d
	}
	return st.Err()
}

// storeStatus maps store errors to gRPC codes.
func storeStatus(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, store.ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, store.ErrUnavailable):
		return unavailable("STORE_UNAVAILABLE", "the configuration store cannot be reached: %v", err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, err.Error())
}
