// Package lease ends the etcd sessions of a control-plane replica (its
// fleet records and name, its leadership) the same way everywhere.
package lease

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// RevokeTimeout bounds End's revoke: etcd may be what failed.
const RevokeTimeout = 2 * time.Second

// End stops keeping session's lease alive and revokes it, which deletes
// the keys on it at once so that other replicas need not wait for it to
// expire; when etcd does not answer within RevokeTimeout, the lease
// expires by itself. (The session's own Close would wait for etcd as
// long as the lease's TTL when the session's context has not ended.)
func End(client *clientv3.Client, session *concurrency.Session) {
	session.Orphan()
	ctx, cancel := context.WithTimeout(context.Background(), RevokeTimeout)
	defer cancel()
	client.Revoke(ctx, session.Lease())
}
