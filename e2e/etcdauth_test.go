package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/etcdtest"
	"github.com/sluice-lb/sluice/internal/loopback"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// TestHAEtcdAuth: replicas reach an etcd with its authentication on as a
// user whose role may read and write their prefix only (--etcd-user,
// --etcd-password-file): a version applied through one reaches a node on
// the other. A replica cut off from etcd for longer than its token lives
// logs in again by itself once it is back, and versions applied through it
// reach the node again. A replica without a user, with a wrong password,
// or as a user whose role does not cover its prefix exits at start and
// says which.
func TestHAEtcdAuth(t *testing.T) {
	binaries(t)
	prefix := haPrefix(t)
	const tokenTTL = time.Second
	etcd := etcdtest.StartAuth(t, tokenTTL,
		etcdtest.User{Name: "sluice", Password: "s3cret", Prefix: prefix},
		etcdtest.User{Name: "elsewhere", Password: "pw", Prefix: "/elsewhere/"})
	password := func(name, pw string) string {
		t.Helper()
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	creds := []string{"--etcd-user", "sluice", "--etcd-password-file", password("sluice", "s3cret")}

	// The second replica reaches etcd through a relay that the test cuts
	// (its --etcd comes last, and the last one counts).
	relay := loopback.NewRelay(t, strings.TrimPrefix(etcd.Endpoint, "http://"))
	rs := startReplicas(t, etcd, 1, creds...)
	rs = append(rs, startReplicas(t, etcd, 1, append(creds, "--etcd", "http://"+relay.Addr)...)...)
	n := startHANode(t, "node-1", rs[0])
	v := applyVia(t, rs[1], clusterOnly(1))
	waitFor(t, "node-1 on the other replica to apply version "+fmt.Sprint(v), func() bool { return n.version() == fmt.Sprint(v) })

	// Unused for longer than its TTL, the replica's token lapses in etcd.
	relay.Cut()
	time.Sleep(3 * tokenTTL)
	relay.Mend()
	snap, err := snapshot.Parse([]byte(clusterOnly(2)), "ha.yaml")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an apply through the replica that was cut off to succeed", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := rs[1].api.Apply(ctx, &sluicev1.ApplyRequest{Snapshot: snap, Author: "e2e"})
		if err != nil {
			t.Logf("apply through the replica that was cut off: %v", err)
			return false
		}
		v = resp.GetVersion()
		return true
	})
	waitFor(t, "node-1 to apply version "+fmt.Sprint(v), func() bool { return n.version() == fmt.Sprint(v) })

	for _, tt := range []struct {
		name  string
		flags []string
		says  string
	}{
		{"no user", nil,
			"etcdserver: user name is empty (etcd's authentication is on: give --etcd-user and --etcd-password-file, or a client certificate whose common name is an etcd user)"},
		{"wrong password", []string{"--etcd-user", "sluice", "--etcd-password-file", password("wrong", "secret")},
			`etcdserver: authentication failed, invalid user ID or password (etcd refused user \"sluice\" with the password of --etcd-password-file)`},
		{"a user of another prefix", []string{"--etcd-user", "elsewhere", "--etcd-password-file", password("elsewhere", "pw")},
			"the replica's etcd user may not read and write under " + prefix + " (its role needs readwrite on that prefix): etcdserver: permission denied"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			refusedAtStart(t, append([]string{"--etcd", etcd.Endpoint, "--etcd-prefix", prefix}, tt.flags...), tt.says)
		})
	}
}
