package cmdrelay

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-lb/sluice/internal/etcdtest"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

const defaultTestTimeout = 20 * time.Second

// nodes is a replica's command registry: it answers for its nodes with
// the connections it closed, and keeps the commands it ran.
type nodes struct {
	ids []string

	mu  sync.Mutex
	ran []*sluicev1.Command
}

func (n *nodes) Run(_ context.Context, action func(cmd *sluicev1.Command)) []*sluicev1.CommandResult {
	var out []*sluicev1.CommandResult
	for i, id := range n.ids {
		cmd := &sluicev1.Command{}
		action(cmd)
		n.mu.Lock()
		n.ran = append(n.ran, cmd)
		n.mu.Unlock()
		out = append(out, &sluicev1.CommandResult{NodeId: id, Closed: uint64(10 + i)})
	}
	return out
}

func (n *nodes) commands() []*sluicev1.Command {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ran
}

// start runs a relay for replica name over local until the test ends.
func start(t *testing.T, cli *clientv3.Client, name string, local Runner, wait time.Duration) *Relay {
	t.Helper()
	r, err := New(cli, local, Options{Prefix: "/t/", Replica: name, Wait: wait})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(defaultTestTimeout):
			t.Error("Relay.Run did not return")
		}
	})
	return r
}

func shutdown(endpoint string) *sluicev1.Command {
	return &sluicev1.Command{Action: &sluicev1.Command_ShutdownSessions{ShutdownSessions: &sluicev1.ShutdownSessionsCommand{Cluster: "web", Endpoint: endpoint}}}
}

// waitRelay sends cmd from a to replica until it is answered: a relay's
// watch starts a moment after its Run does.
func waitRelay(t *testing.T, a *Relay, replica string, cmd *sluicev1.Command) []*sluicev1.CommandResult {
	t.Helper()
	deadline := time.Now().Add(defaultTestTimeout)
	for {
		res, err := a.Send(context.Background(), replica, cmd)
		if err == nil {
			return res
		}
		if time.Now().After(deadline) {
			t.Fatalf("Send to %s: %v", replica, err)
		}
	}
}

// TestSend: a command sent to a replica runs on that replica's nodes, and
// their results come back; nothing of the call stays in etcd.
func TestSend(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	bNodes := &nodes{ids: []string{"n2", "n3"}}
	slashed := &nodes{ids: []string{"n9"}}
	a := start(t, cli, "a", &nodes{ids: []string{"n1"}}, time.Second)
	start(t, cli, "10.0.0.2:7070", bNodes, time.Second)
	start(t, cli, "10.0.0.2:7070/x", slashed, time.Second) // not b's inbox

	res := waitRelay(t, a, "10.0.0.2:7070", shutdown("b1"))
	var got []string
	for _, r := range res {
		got = append(got, fmt.Sprintf("%s %d %q", r.GetNodeId(), r.GetClosed(), r.GetError()))
	}
	if want := `n2 10 "" n3 11 ""`; strings.Join(got, " ") != want {
		t.Errorf("results %q, want %q", got, want)
	}
	for _, cmd := range bNodes.commands() {
		if !proto.Equal(cmd, shutdown("b1")) {
			t.Errorf("b's node was sent %v, want %v", cmd, shutdown("b1"))
		}
	}
	if n := len(slashed.commands()); n != 0 {
		t.Errorf("replica 10.0.0.2:7070/x ran %d commands sent to 10.0.0.2:7070", n)
	}
	resp, err := cli.Get(context.Background(), "/t/commands/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Errorf("%d keys left under /t/commands/ after the call (err %v), want none", resp.Count, err)
	}
}

// TestNoSuchReplica: a replica that does not run answers nothing, and
// Send says so once its wait is over.
func TestNoSuchReplica(t *testing.T) {
	srv := etcdtest.Start(t)
	a := start(t, srv.Client(t), "a", &nodes{}, 300*time.Millisecond)
	t0 := time.Now()
	_, err := a.Send(context.Background(), "gone", shutdown("b1"))
	if err == nil || err.Error() != "no answer within 300ms" {
		t.Fatalf("Send to a replica that is not there: %v, want no answer within 300ms", err)
	}
	if took := time.Since(t0); took > 5*time.Second {
		t.Errorf("Send gave up after %v, want about its 300ms wait", took)
	}
}

// TestStaleCommandNotRun: a command whose caller gave up before the
// replica saw it (here: put while the replica was not running, its lease
// revoked since) is not run when the replica's watch reaches it.
func TestStaleCommandNotRun(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	ctx := context.Background()
	lease, err := cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	put, err := cli.Put(ctx, "/t/commands/to/b/old", `{"shutdownSessions":{"cluster":"web","endpoint":"b1"}}`, clientv3.WithLease(lease.ID))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Revoke(ctx, lease.ID); err != nil {
		t.Fatal(err)
	}
	bNodes := &nodes{ids: []string{"n2"}}
	b, err := New(cli, bNodes, Options{Prefix: "/t/", Replica: "b"})
	if err != nil {
		t.Fatal(err)
	}
	// The watch of a replica that went away resumes where it was: hand
	// the key's put to serve as the watch would.
	get, err := cli.Get(ctx, "/t/commands/to/b/", clientv3.WithPrefix(), clientv3.WithRev(put.Header.GetRevision()))
	if err != nil || len(get.Kvs) != 1 {
		t.Fatalf("reading the put back: %v, %d keys", err, len(get.Kvs))
	}
	b.serve(ctx, get.Kvs[0])
	if n := len(bNodes.commands()); n != 0 {
		t.Errorf("b ran %d commands whose caller had given up, want none", n)
	}
	if resp, err := cli.Get(ctx, "/t/commands/results/old"); err != nil || resp.Count != 0 {
		t.Errorf("results written for a command nobody waits for (err %v)", err)
	}
}

// TestUnknownAction: a command of a kind this replica does not know (a
// newer replica sent it) is refused with a reason, not run as nothing.
func TestUnknownAction(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	a := start(t, cli, "a", &nodes{}, time.Second)
	bNodes := &nodes{ids: []string{"n2"}}
	start(t, cli, "b", bNodes, time.Second)
	waitRelay(t, a, "b", shutdown("b1"))
	_, err := a.Send(context.Background(), "b", &sluicev1.Command{})
	if want := "replica b does not know the command: is it older than the replica that sent it?"; err == nil || err.Error() != want {
		t.Fatalf("Send of a command without an action: %v, want %q", err, want)
	}
	if n := len(bNodes.commands()); n != 1 {
		t.Errorf("b ran %d commands, want only the first", n)
	}
}
