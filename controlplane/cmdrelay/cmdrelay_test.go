package cmdrelay

import (
	"context"
	"fmt"
	"slices"
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
// the connections it closed, after delay, and keeps the commands it ran.
type nodes struct {
	ids   []string
	delay time.Duration

	mu  sync.Mutex
	ran []*sluicev1.Command
}

func (n *nodes) Run(_ context.Context, action func(cmd *sluicev1.Command)) []*sluicev1.CommandResult {
	time.Sleep(n.delay)
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

// start runs a relay for replica name over local until the test ends,
// and returns once it watches for commands.
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
	select {
	case <-r.ready:
	case <-time.After(defaultTestTimeout):
		t.Fatalf("replica %s's relay does not watch", name)
	}
	return r
}

func shutdown(endpoint string) *sluicev1.Command {
	return &sluicev1.Command{Action: &sluicev1.Command_ShutdownSessions{ShutdownSessions: &sluicev1.ShutdownSessionsCommand{Cluster: "web", Endpoint: endpoint}}}
}

// send sends cmd from a to replica, which must answer.
func send(t *testing.T, a *Relay, replica string, cmd *sluicev1.Command) []*sluicev1.CommandResult {
	t.Helper()
	res, err := a.Send(context.Background(), replica, cmd)
	if err != nil {
		t.Fatalf("Send to %s: %v", replica, err)
	}
	return res
}

// TestSend: a command sent to a replica runs on that replica's nodes, and
// their results come back; nothing of the call stays in etcd.
func TestSend(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	bNodes := &nodes{ids: []string{"n2", "n3"}}
	slashed := &nodes{ids: []string{"n9"}}
	a := start(t, cli, "a", &nodes{ids: []string{"n1"}}, 5*time.Second)
	start(t, cli, "10.0.0.2:7070", bNodes, 5*time.Second)
	// b's name is the start of this one's: b must not take its commands.
	start(t, cli, "10.0.0.2:7070/x", slashed, 5*time.Second)

	res := send(t, a, "10.0.0.2:7070", shutdown("b1"))
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
	if res := send(t, a, "10.0.0.2:7070/x", shutdown("b2")); len(res) != 1 || res[0].GetNodeId() != "n9" {
		t.Errorf("results from 10.0.0.2:7070/x: %v, want n9's", res)
	}
	if n := len(bNodes.commands()); n != 2 {
		t.Errorf("replica 10.0.0.2:7070 ran %d commands for its 2 nodes, want 2: none of those sent to 10.0.0.2:7070/x", n)
	}
	resp, err := cli.Get(context.Background(), "/t/commands/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Errorf("%d keys left under /t/commands/ after the call (err %v), want none", resp.Count, err)
	}
	// The nodes a command is for go with it: the replica's registry sends
	// it to those alone.
	send(t, a, "10.0.0.2:7070", &sluicev1.Command{Action: shutdown("b3").GetAction(), Nodes: []string{"n3"}})
	if cmds := bNodes.commands(); len(cmds) != 4 || !slices.Equal(cmds[3].GetNodes(), []string{"n3"}) {
		t.Errorf("b ran %v, want the command for n3 last", cmds)
	}
}

// TestNoSuchReplica: a replica that does not run answers nothing, and
// Send says so once its wait is over.
func TestNoSuchReplica(t *testing.T) {
	srv := etcdtest.Start(t)
	a := start(t, srv.Client(t), "a", &nodes{}, 300*time.Millisecond)
	t0 := time.Now()
	_, err := a.Send(context.Background(), "gone", shutdown("b1"))
	if want := "no answer within 300ms; the command was not run there"; err == nil || err.Error() != want {
		t.Fatalf("Send to a replica that is not there: %v, want %q", err, want)
	}
	if took := time.Since(t0); took > 5*time.Second {
		t.Errorf("Send gave up after %v, want about its 300ms wait", took)
	}
}

// TestStaleCommandNotRun: a command whose caller gave up before the
// replica saw it is not run when the replica's watch reaches it (a
// replica that was away resumes its watch where it was): neither once its
// key is gone with the caller's lease, nor once the caller marked it
// abandoned.
func TestStaleCommandNotRun(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		giveUp func(lease clientv3.LeaseID) error
	}{
		{"lease revoked", func(lease clientv3.LeaseID) error {
			_, err := cli.Revoke(ctx, lease)
			return err
		}},
		{"abandoned", func(lease clientv3.LeaseID) error {
			_, err := cli.Put(ctx, "/t/commands/results/old", abandoned, clientv3.WithLease(lease))
			return err
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lease, err := cli.Grant(ctx, 30)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cli.Revoke(ctx, lease.ID) })
			put, err := cli.Put(ctx, "/t/commands/to/b/old", `{"shutdownSessions":{"cluster":"web","endpoint":"b1"}}`, clientv3.WithLease(lease.ID))
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.giveUp(lease.ID); err != nil {
				t.Fatal(err)
			}
			bNodes := &nodes{ids: []string{"n2"}}
			b, err := New(cli, bNodes, Options{Prefix: "/t/", Replica: "b"})
			if err != nil {
				t.Fatal(err)
			}
			// Hand the key's put to serve as the watch would.
			get, err := cli.Get(ctx, "/t/commands/to/b/", clientv3.WithPrefix(), clientv3.WithRev(put.Header.GetRevision()))
			if err != nil || len(get.Kvs) != 1 {
				t.Fatalf("reading the put back: %v, %d keys", err, len(get.Kvs))
			}
			b.serve(ctx, get.Kvs[0])
			if n := len(bNodes.commands()); n != 0 {
				t.Errorf("b ran %d commands whose caller had given up, want none", n)
			}
		})
	}
}

// TestAnswerAfterWait: a replica that started a command but answers after
// the caller's wait is not reported as not having run it.
func TestAnswerAfterWait(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	a := start(t, cli, "a", &nodes{}, 2*time.Second)
	slow := &nodes{ids: []string{"n2"}, delay: 4 * time.Second}
	start(t, cli, "b", slow, time.Second)
	_, err := a.Send(context.Background(), "b", shutdown("b1"))
	if want := "it started the command, but no answer within 2s"; err == nil || err.Error() != want {
		t.Fatalf("Send to a replica that answers late: %v, want %q", err, want)
	}
	deadline := time.Now().Add(defaultTestTimeout)
	for len(slow.commands()) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("b never ran the command it claimed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestUnknownAction: a command of a kind this replica does not know (a
// newer replica sent it) is refused with a reason, not run as nothing.
func TestUnknownAction(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	a := start(t, cli, "a", &nodes{}, 5*time.Second)
	bNodes := &nodes{ids: []string{"n2"}}
	start(t, cli, "b", bNodes, 5*time.Second)
	send(t, a, "b", shutdown("b1"))
	_, err := a.Send(context.Background(), "b", &sluicev1.Command{})
	if want := "replica b does not know the command: is it older than the replica that sent it?"; err == nil || err.Error() != want {
		t.Fatalf("Send of a command without an action: %v, want %q", err, want)
	}
	if n := len(bNodes.commands()); n != 1 {
		t.Errorf("b ran %d commands, want only the first", n)
	}
}
