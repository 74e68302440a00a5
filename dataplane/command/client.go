// Package command is the node's side of the command stream: it keeps a
// CommandService stream open to the control plane, runs each operator's
// command it receives on the node (closing an endpoint's sessions, for
// sluicectl shutdown-sessions) and answers with the result. It reconnects
// with backoff and jitter when the stream breaks, as the discovery client
// does.
package command

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"

	"github.com/sluice-lb/sluice/internal/reconnect"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Node runs the commands; *node.Node implements it. Calls come from the
// client's goroutine, one at a time, and should return soon: the next
// command waits.
type Node interface {
	// ShutdownSessions closes every connection to one endpoint and says
	// how many it closed, or why it could not.
	ShutdownSessions(cluster, endpoint string) (closed int, err error)
}

// maxError is the longest error text a result carries (the API's limit).
const maxError = 4096

// Client keeps a node's command stream open.
type Client struct {
	Conn   grpc.ClientConnInterface
	NodeID string
	Node   Node
	Logger *slog.Logger

	// MinBackoff and MaxBackoff bound the wait between reconnects
	// (defaults 200ms and 15s), drawn at random up to an exponentially
	// growing ceiling, as discovery.Client's.
	MinBackoff, MaxBackoff time.Duration

	retired atomic.Bool
}

// Run keeps the stream open until ctx ends, or Retire was called and the
// stream ends.
func (c *Client) Run(ctx context.Context) {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	reconnect.Loop(ctx, c.MinBackoff, c.MaxBackoff, c.Logger, "command", &c.retired, c.stream)
}

// Retire keeps the stream open but opens no new one once it ends, as
// discovery.Client's Retire.
func (c *Client) Retire() { c.retired.Store(true) }

// stream runs one stream. It reports whether the control plane registered
// it (sent its headers), which resets the backoff.
func (c *Client) stream(ctx context.Context) (registered bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := sluicev1.NewCommandServiceClient(c.Conn).Commands(ctx)
	if err != nil {
		return false, err
	}
	if err := reconnect.Register(st, &sluicev1.CommandReply{NodeId: c.NodeID}); err != nil {
		return false, err
	}
	c.Logger.Debug("command stream open", "node", c.NodeID)
	for {
		cmd, err := st.Recv()
		if err != nil {
			return true, err
		}
		res := c.run(cmd)
		res.CommandId = cmd.GetId()
		if err := st.Send(&sluicev1.CommandReply{Result: res}); err != nil {
			return true, err
		}
	}
}

// run runs one command on the node.
func (c *Client) run(cmd *sluicev1.Command) *sluicev1.CommandResult {
	switch a := cmd.GetAction().(type) {
	case *sluicev1.Command_ShutdownSessions:
		sd := a.ShutdownSessions
		closed, err := c.Node.ShutdownSessions(sd.GetCluster(), sd.GetEndpoint())
		if err != nil {
			return failed(err)
		}
		return &sluicev1.CommandResult{Closed: uint64(closed)}
	}
	return failed(errors.New("command: this node does not know the command; is it older than the control plane?"))
}

// failed is the result of a command that failed with err. Its text is
// made valid UTF-8 (a protobuf string that is not cannot be sent) and cut
// to maxError bytes at a character's start.
func failed(err error) *sluicev1.CommandResult {
	msg := strings.ToValidUTF8(err.Error(), "\uFFFD")
	if len(msg) > maxError {
		cut := maxError
		for !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut]
	}
	return &sluicev1.CommandResult{Error: msg}
}
