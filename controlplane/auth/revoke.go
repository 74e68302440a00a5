package auth

import (
	"context"
	"crypto/x509"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluice-lb/sluice/internal/pki"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// revocations are the node certificates a Guard refuses (SetRevoked), and
// the node streams open on certificates that a revocation would end.
type revocations struct {
	mu      sync.Mutex
	revoked map[string]time.Time // node id: revoked at, in whole seconds
	live    map[*liveStream]struct{}
	// stored reads the revoked nodes of the store's current version
	// (ReadRevokedFrom); nil: none to read.
	stored func(context.Context) ([]*sluicev1.RevokedNode, error)
}

// liveStream is a node stream open on a certificate issued at issued.
type liveStream struct {
	node   string
	issued time.Time
	cancel context.CancelCauseFunc
}

// issuedAt is when cert counts as issued: a minute after its NotBefore,
// which the control plane's CA backdates by that (pki.Backdate). A
// certificate issued before a revocation's second is revoked by it; one
// issued in that second or later is not.
func issuedAt(cert *x509.Certificate) time.Time { return cert.NotBefore.Add(pki.Backdate) }

// revokedAt is when revoked revokes node id's certificate issued at
// issued, and whether it does.
func revokedAt(revoked map[string]time.Time, id string, issued time.Time) (time.Time, bool) {
	at, ok := revoked[id]
	return at, ok && issued.Before(at)
}

// revokedMap is nodes by id.
func revokedMap(nodes []*sluicev1.RevokedNode) map[string]time.Time {
	m := make(map[string]time.Time, len(nodes))
	for _, n := range nodes {
		m[n.GetNodeId()] = n.GetRevokedAt().AsTime()
	}
	return m
}

// revokedError is what a node whose certificate was revoked at at is told.
func revokedError(node string, at time.Time) error {
	return status.Errorf(codes.PermissionDenied,
		"node %s's certificate was revoked at %s (sluicectl cert revoke); the node needs a new one ('sluicectl cert issue')",
		node, at.UTC().Format(time.RFC3339))
}

// SetRevoked makes nodes the revoked ones (those of the version the
// control plane publishes), and ends each node stream open on a
// certificate they revoke: the node is told why, and its next calls are
// refused.
func (g *Guard) SetRevoked(nodes []*sluicev1.RevokedNode) {
	if g == nil {
		return
	}
	revoked := revokedMap(nodes)
	r := &g.rev
	r.mu.Lock()
	r.revoked = revoked
	var cut []*liveStream
	for ls := range r.live {
		if _, ok := revokedAt(revoked, ls.node, ls.issued); ok {
			cut = append(cut, ls)
		}
	}
	r.mu.Unlock()
	for _, ls := range cut {
		at := revoked[ls.node]
		g.log.Warn("node stream ended: its certificate was revoked", "node", ls.node, "revoked_at", at.UTC().Format(time.RFC3339))
		ls.cancel(revokedError(ls.node, at))
	}
}

// checkRevoked refuses a certificate of node id that a revocation covers.
func (g *Guard) checkRevoked(id string, leaf *x509.Certificate) error {
	g.rev.mu.Lock()
	at, ok := revokedAt(g.rev.revoked, id, issuedAt(leaf))
	g.rev.mu.Unlock()
	if ok {
		return revokedError(id, at)
	}
	return nil
}

// open registers a node stream on leaf, for SetRevoked to end; it
// refuses one that a revocation made since the call was checked covers.
// close unregisters it.
func (g *Guard) open(ctx context.Context, id string, leaf *x509.Certificate) (_ context.Context, closeFn func(), err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	ls := &liveStream{node: id, issued: issuedAt(leaf), cancel: cancel}
	r := &g.rev
	r.mu.Lock()
	if at, ok := revokedAt(r.revoked, id, ls.issued); ok {
		r.mu.Unlock()
		cancel(nil)
		return nil, nil, revokedError(id, at)
	}
	if r.live == nil {
		r.live = map[*liveStream]struct{}{}
	}
	r.live[ls] = struct{}{}
	r.mu.Unlock()
	return ctx, func() {
		r.mu.Lock()
		delete(r.live, ls)
		r.mu.Unlock()
		cancel(nil)
	}, nil
}

// ReadRevokedFrom gives the Guard the revoked nodes of the store's current
// version, which a renewal checks beside those published: a replica that
// cannot read the store (etcd away) publishes an older version, and must
// not renew a certificate revoked since, which would outlive its
// revocation.
func (g *Guard) ReadRevokedFrom(stored func(context.Context) ([]*sluicev1.RevokedNode, error)) {
	if g == nil {
		return
	}
	g.rev.mu.Lock()
	g.rev.stored = stored
	g.rev.mu.Unlock()
}

// checkStoredRevoked refuses a renewal of node id's leaf that the store's
// current version revokes, or that it cannot tell of (UNAVAILABLE: the
// node tries again later).
func (g *Guard) checkStoredRevoked(ctx context.Context, id string, leaf *x509.Certificate) error {
	g.rev.mu.Lock()
	stored := g.rev.stored
	g.rev.mu.Unlock()
	if stored == nil {
		return nil
	}
	nodes, err := stored(ctx)
	if err != nil {
		return status.Errorf(codes.Unavailable, "the revoked nodes cannot be read from the store (%v): the renewal waits for it", err)
	}
	if at, ok := revokedAt(revokedMap(nodes), id, issuedAt(leaf)); ok {
		return revokedError(id, at)
	}
	return nil
}
