// Package command carries operators' one-off actions to dataplane nodes over
// sluice.v1.CommandService: actions that are not configuration, such as
// closing every connection to an endpoint now (sluicectl shutdown-sessions).
//
// Each node keeps one Commands stream open. Its first message names it; the
// Registry then holds the stream as that node's, until it breaks or a newer
// stream of the same node replaces it. Run sends one command to every node
// holding a stream and waits, a bounded time, for each node's result.
//
// Goroutines: gRPC runs each stream's handler, which sends the commands
// queued for its node; one more goroutine per stream receives the node's
// results and hands each to the call waiting for it. Run is called from
// the config API's goroutines and never waits longer than its timeout,
// whatever the nodes do: a queue that is full, a stream that breaks or a
// node that never answers each make an error result.
package command

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// DefaultTimeout bounds how long Run waits for the nodes' results.
const DefaultTimeout = 5 * time.Second

// queueSize bounds the commands waiting to be sent on one stream; beyond
// it, a node that does not read its stream gets an error result at once.
const queueSize = 16

// Registry holds the Commands stream of every node that has one open.
type Registry struct {
	sluicev1.UnimplementedCommandServiceServer

	log     *slog.Logger
	timeout time.Duration // DefaultTimeout but in tests
	seq     atomic.Uint64 // command ids

	mu      sync.Mutex
	streams map[string]*stream // by node id
	closed  chan struct{}      // closed by Close
	once    sync.Once
}

var _ sluicev1.CommandServiceServer = (*Registry)(nil)

// stream is one node's open Commands stream.
type stream struct {
	node     string
	queue    chan *sluicev1.Command // sent by the stream's handler, in order
	done     chan struct{}          // closed when the handler returned
	replaced chan struct{}          // closed when a newer stream of the node registered

	mu      sync.Mutex
	waiting map[string]chan *sluicev1.CommandResult // by command id
}

// NewRegistry returns a registry with no streams, which logs connects,
// disconnects and late results to log (nil: no logging).
func NewRegistry(log *slog.Logger) *Registry {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{log: log, timeout: DefaultTimeout, streams: map[string]*stream{}, closed: make(chan struct{})}
}

// Close ends every stream with UNAVAILABLE, so nodes reconnect (to this
// control plane after its restart, or another one), and refuses new ones.
// Call it before grpc.Server.GracefulStop, which otherwise waits for
// streams that never end by themselves.
func (r *Registry) Close() { r.once.Do(func() { close(r.closed) }) }

// Nodes returns the ids of the nodes holding a stream, sorted.
func (r *Registry) Nodes() []string {
	r.mu.Lock()
	ids := make([]string, 0, len(r.streams))
	for id := range r.streams {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	slices.Sort(ids)
	return ids
}

// Commands implements sluicev1.CommandServiceServer: it holds the node's
// stream until the node closes it, it breaks, a newer stream of the same
// node replaces it, or the registry closes. Headers are sent once the
// stream is registered, which tells the node its commands can come.
func (r *Registry) Commands(st grpc.BidiStreamingServer[sluicev1.CommandReply, sluicev1.Command]) error {
	first, err := st.Recv()
	if err != nil {
		return err
	}
	if err := first.Validate(); err != nil {
		return status.Errorf(codes.InvalidArgument, "command: %v", err)
	}
	id := first.GetNodeId()
	if id == "" {
		return status.Error(codes.InvalidArgument, "command: the first message must carry node_id")
	}
	s := &stream{node: id, queue: make(chan *sluicev1.Command, queueSize), done: make(chan struct{}),
		replaced: make(chan struct{}), waiting: map[string]chan *sluicev1.CommandResult{}}
	defer close(s.done)
	old, err := r.register(s)
	if err != nil {
		return err
	}
	defer r.unregister(s)
	if old != nil {
		r.log.Info("node reconnected for commands; older stream replaced", "node", id)
	} else {
		r.log.Info("node connected for commands", "node", id)
	}
	if err := st.SendHeader(nil); err != nil {
		return err
	}

	// Results come on their own goroutine, which ends when Recv fails:
	// at the latest once this handler has returned and gRPC has ended the
	// stream.
	received := make(chan error, 1)
	go func() {
		for {
			reply, err := st.Recv()
			if err != nil {
				received <- err
				return
			}
			r.deliver(s, reply)
		}
	}()
	for {
		select {
		case cmd := <-s.queue:
			if !s.awaited(cmd.GetId()) {
				continue // Run gave up on it: too late to act
			}
			if err := st.Send(cmd); err != nil {
				return err
			}
		case err := <-received:
			r.log.Info("node disconnected from commands", "node", id, "err", err)
			return nil
		case <-st.Context().Done():
			return st.Context().Err()
		case <-s.replaced:
			return status.Error(codes.Aborted, "command: a newer stream of this node replaced this one")
		case <-r.closed:
			return status.Error(codes.Unavailable, "command: control plane shutting down")
		}
	}
}

// register makes s its node's stream and returns the stream it replaced.
func (r *Registry) register(s *stream) (old *stream, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.closed:
		return nil, status.Error(codes.Unavailable, "command: control plane shutting down")
	default:
	}
	old = r.streams[s.node]
	if old != nil {
		close(old.replaced)
	}
	r.streams[s.node] = s
	return old, nil
}

// awaited reports whether a Run call still waits for the result of the
// command with the given id.
func (s *stream) awaited(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.waiting[id]
	return ok
}

// unregister forgets s unless a newer stream replaced it already.
func (r *Registry) unregister(s *stream) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.streams[s.node] == s {
		delete(r.streams, s.node)
	}
}

// deliver hands a node's result to the call waiting for it.
func (r *Registry) deliver(s *stream, reply *sluicev1.CommandReply) {
	res := reply.GetResult()
	if res == nil {
		return
	}
	if err := reply.Validate(); err != nil {
		res = &sluicev1.CommandResult{CommandId: res.GetCommandId(), Error: "invalid result: " + err.Error()}
	}
	s.mu.Lock()
	ch, ok := s.waiting[res.GetCommandId()]
	delete(s.waiting, res.GetCommandId())
	s.mu.Unlock()
	if !ok {
		r.log.Info("result of a command no longer awaited", "node", s.node, "command", res.GetCommandId())
		return
	}
	ch <- res // cap 1, one send per id
}

// Run sends the command made by action to every node holding a stream (to
// those of them its Nodes names, when it names any), and returns one
// result per node, sorted by node id, each with its NodeId set. It waits
// for every node's result until the registry's timeout or ctx ends; a node
// without a result by then gets an error result saying so.
func (r *Registry) Run(parent context.Context, action func(cmd *sluicev1.Command)) []*sluicev1.CommandResult {
	ctx, cancel := context.WithTimeout(parent, r.timeout)
	defer cancel()
	var made sluicev1.Command
	action(&made)
	var only map[string]bool
	if len(made.GetNodes()) > 0 {
		only = make(map[string]bool, len(made.GetNodes()))
		for _, id := range made.GetNodes() {
			only[id] = true
		}
	}
	r.mu.Lock()
	streams := make([]*stream, 0, len(r.streams))
	for _, s := range r.streams {
		if only == nil || only[s.node] {
			streams = append(streams, s)
		}
	}
	r.mu.Unlock()

	results := make([]*sluicev1.CommandResult, len(streams))
	var wg sync.WaitGroup
	for i, s := range streams {
		cmd := &sluicev1.Command{Id: strconv.FormatUint(r.seq.Add(1), 10), Action: made.GetAction()}
		wg.Go(func() {
			res := r.runOn(ctx, parent, s, cmd)
			res.CommandId, res.NodeId = cmd.GetId(), s.node
			results[i] = res
		})
	}
	wg.Wait()
	slices.SortFunc(results, func(a, b *sluicev1.CommandResult) int { return cmp.Compare(a.GetNodeId(), b.GetNodeId()) })
	return results
}

// runOn sends cmd on s and waits for its result until ctx ends: at the
// registry's timeout, or when parent does.
func (r *Registry) runOn(ctx, parent context.Context, s *stream, cmd *sluicev1.Command) *sluicev1.CommandResult {
	ch := make(chan *sluicev1.CommandResult, 1)
	s.mu.Lock()
	s.waiting[cmd.GetId()] = ch
	s.mu.Unlock()
	forget := func() {
		s.mu.Lock()
		delete(s.waiting, cmd.GetId())
		s.mu.Unlock()
	}
	select {
	case s.queue <- cmd:
	default:
		forget()
		return failed(errors.New("the node is not taking commands: too many waiting"))
	}
	select {
	case res := <-ch:
		return res
	case <-s.done:
		forget()
		return failed(errors.New("the node's command stream ended before it answered"))
	case <-ctx.Done():
		forget()
		if parent.Err() != nil {
			return failed(fmt.Errorf("gave up waiting for a reply: %v", parent.Err()))
		}
		return failed(fmt.Errorf("no reply within %v", r.timeout))
	}
}

func failed(err error) *sluicev1.CommandResult { return &sluicev1.CommandResult{Error: err.Error()} }
