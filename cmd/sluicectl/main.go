// Command sluicectl is the operators' client of a Sluice control plane: it
// validates snapshots offline, applies them, shows what would change,
// reports what the fleet runs and how its endpoints fare, and shuts down an
// endpoint's sessions on demand.
//
//	sluicectl [--cp ADDR] [--timeout D] COMMAND [flags]
//
// The control plane address comes from --cp, else $SLUICE_CP, else
// 127.0.0.1:7070. Exit status: 0 on success, 1 on a refused snapshot or a
// failed call, 2 on a usage error; with --wait, 2 when a node refused the
// version or a staged rollout halted or ended short of the group, and 3
// when the wait timed out.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluice-lb/sluice/internal/cliflag"
	"github.com/sluice-lb/sluice/internal/reconnect"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

const defaultCP = "127.0.0.1:7070"

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// maxMsgSize lets a client send and receive whole large snapshots (10k
// clusters, 100k endpoints); gRPC's 4 MiB default is too small for them.
const maxMsgSize = 256 << 20

func main() {
	// SIGTERM too, so that top leaves the terminal as it found it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// cli is one invocation: the global options and where output goes.
type cli struct {
	cp      string
	timeout time.Duration
	sec     security
	// online is set for a command that calls the control plane: parsing
	// its flags, which may include the global ones, dials it (connect).
	online bool
	conn   *grpc.ClientConn // the control plane; nil until connect
	// replicas are the other control-plane replicas asked (replicas.go).
	replicas map[string]*grpc.ClientConn
	// synopsis is the command's usage line, for its usage errors.
	synopsis string
	// source says where the snapshot the command read was written, to
	// place its faults; nil before one is read.
	source *snapshot.Source
	stdin  io.Reader // what -f - reads
	stdout io.Writer
	stderr io.Writer
}

// command is a subcommand. offline commands never dial the control plane.
type command struct {
	name    string
	summary string
	offline bool
	run     func(ctx context.Context, c *cli, client sluicev1.ConfigServiceClient, args []string) int
}

var commands = []command{
	{name: "validate", summary: "check a snapshot file or directory offline", offline: true, run: cmdValidate},
	{name: "apply", summary: "validate and store a snapshot as the new version", run: cmdApply},
	{name: "diff", summary: "show what apply would change", run: cmdDiff},
	{name: "set-weight", summary: "set one endpoint's weight, as a new version", run: cmdSetWeight},
	{name: "drain", summary: "stop new work to one endpoint; its connections end at drain_timeout", run: cmdDrain},
	{name: "disable", summary: "take one endpoint out of service", run: cmdDisable},
	{name: "enable", summary: "put a drained or disabled endpoint back in service", run: cmdEnable},
	{name: "get", summary: "print the current snapshot, or a stored version", run: cmdGet},
	{name: "history", summary: "list stored versions, newest first, with the nodes that refused each", run: cmdHistory},
	{name: "rollback", summary: "make a stored version current again, as a new version", run: cmdRollback},
	{name: "nodes", summary: "list dataplane nodes: group, state, applied version, last NACK", run: cmdNodes},
	{name: "replicas", summary: "list the control plane's replicas: nodes, TLS, client CA, token key", run: cmdReplicas},
	{name: "rollout", summary: "follow and steer a staged rollout: rollout status|resume|abort", run: cmdRollout},
	{name: "groups", summary: "list node groups: selector, version, nodes", run: cmdGroups},
	{name: "group", summary: "define node groups: group set NAME --selector SEL | group delete NAME", run: cmdGroup},
	{name: "conns", summary: "list recent client connections, newest first", run: cmdConns},
	{name: "stats", summary: "per node and endpoint: health, weight, conns, requests, bytes, errors", run: cmdStats},
	{name: "top", summary: "a refreshing view of the fleet: health, weight, req/s, errors/s, bytes/s", run: cmdTop},
	{name: "shutdown-sessions", summary: "close every connection to one endpoint on every node, now", run: cmdShutdownSessions},
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `Usage: sluicectl [--cp ADDR] [--timeout D] COMMAND [flags]

sluicectl drives a Sluice control plane (sluice-cp) over gRPC.

Commands:
`)
	width := 0
	for _, c := range commands {
		width = max(width, len(c.name))
	}
	for _, c := range commands {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprintf(w, `
Global flags, before or after the command:
  --cp ADDR     control plane gRPC address, or replicas' comma-separated
                (default $SLUICE_CP, else %s)
  --timeout D   give up on the control plane after D (default 10s)
  --token T     bearer token for a control plane that checks tokens (default $SLUICE_TOKEN)
  --ca FILE     verify the control plane over TLS with this CA (default $SLUICE_CA); plain gRPC without
  --cert FILE, --key FILE  a client certificate to present over TLS (optional)

"sluicectl --version" prints the version and exits (before any command: after
"get", --version is a flag of get's). Run "sluicectl COMMAND --help" for the
flags of a command.

-o json prints the control plane's answer in protobuf's JSON mapping: the
.proto's field names, enums by full name (CLOSE_REASON_CLIENT_CLOSED), 64-bit
integers as strings; get -o json prints the snapshot as apply reads it.

Exit status: 0 ok, 1 refused or failed, 2 usage error; with --wait, 2 a node
refused the version or the rollout halted, 3 --wait-timeout passed first.
`, defaultCP)
}

// run is sluicectl with its arguments (without the program name); it returns
// the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("sluicectl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cpDefault := os.Getenv("SLUICE_CP")
	if cpDefault == "" {
		cpDefault = defaultCP
	}
	c.cp, c.timeout = cpDefault, 10*time.Second
	c.sec.token, c.sec.ca = os.Getenv("SLUICE_TOKEN"), os.Getenv("SLUICE_CA")
	c.globalFlags(fs)
	printVer := fs.Bool("version", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return 0
		}
		fmt.Fprintf(stderr, "sluicectl: %s\nRun 'sluicectl --help' for the commands and global flags.\n", cliflag.Explain(fs, err))
		return 2
	}
	if *printVer {
		fmt.Fprintln(stdout, cliflag.Version("sluicectl", version))
		return 0
	}
	if fs.NArg() == 0 {
		usage(stderr)
		return 2
	}
	name, rest := fs.Arg(0), fs.Args()[1:]
	if name == "help" {
		usage(stdout)
		return 0
	}
	for _, cmd := range commands {
		if cmd.name != name {
			continue
		}
		if cmd.offline {
			return cmd.run(ctx, c, nil, rest)
		}
		c.online = true
		defer c.close()
		return cmd.run(ctx, c, sluicev1.NewConfigServiceClient(cpConn{c}), rest)
	}
	names := make([]string, len(commands))
	for i, cmd := range commands {
		names[i] = cmd.name
	}
	if near := snapshot.Closest(name, names); near != "" {
		fmt.Fprintf(stderr, "sluicectl: unknown command %q, did you mean %q?\n", name, near)
	} else {
		fmt.Fprintf(stderr, "sluicectl: unknown command %q\n", name)
	}
	fmt.Fprintln(stderr, "Run 'sluicectl --help' for the commands.")
	return 2
}

// globalNames are the global flags, which a command's flags take too.
var globalNames = map[string]bool{"cp": true, "timeout": true, "token": true, "ca": true, "cert": true, "key": true}

// globalFlags defines the global flags on fs, each defaulting to the value
// it has: those before the command, or the environment's.
func (c *cli) globalFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.cp, "cp", c.cp, "")
	fs.DurationVar(&c.timeout, "timeout", c.timeout, "")
	fs.StringVar(&c.sec.token, "token", c.sec.token, "")
	fs.StringVar(&c.sec.ca, "ca", c.sec.ca, "")
	fs.StringVar(&c.sec.cert, "cert", c.sec.cert, "")
	fs.StringVar(&c.sec.key, "key", c.sec.key, "")
}

// flags makes a subcommand's flag set, which takes the global flags too:
// "sluicectl nodes --cp ADDR" as "sluicectl --cp ADDR nodes". Its --help
// prints synopsis, what the command does, and the command's own flags.
func (c *cli) flags(name, synopsis, about string) *flag.FlagSet {
	c.synopsis = synopsis
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	c.globalFlags(fs)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: sluicectl %s\n\n%s\n", synopsis, strings.TrimSpace(about))
		own := flag.NewFlagSet(name, flag.ContinueOnError)
		own.SetOutput(w)
		fs.VisitAll(func(f *flag.Flag) {
			if !globalNames[f.Name] {
				own.Var(f.Value, f.Name, f.Usage)
				own.Lookup(f.Name).DefValue = f.DefValue
			}
		})
		if hasFlags(own) {
			fmt.Fprintln(w, "\nFlags:")
			own.PrintDefaults()
		}
		fmt.Fprintln(w, "\nThe global flags (--cp, --timeout, --token, --ca, --cert, --key) go before\nor after the command; 'sluicectl --help' lists them.")
	}
	return fs
}

func hasFlags(fs *flag.FlagSet) bool {
	has := false
	fs.VisitAll(func(*flag.Flag) { has = true })
	return has
}

// connect dials the control plane for a command that calls it, once its
// flags are parsed; it returns -1 to go on, or the exit status.
func (c *cli) connect() int {
	if !c.online || c.conn != nil {
		return -1
	}
	if c.timeout <= 0 {
		fmt.Fprintln(c.stderr, "sluicectl: --timeout must be positive")
		return 2
	}
	// A token read from a file or a CI secret often ends with a newline,
	// which no token has and gRPC refuses in a header.
	c.sec.token = strings.TrimSpace(c.sec.token)
	dial, err := c.sec.dialOptions()
	if err != nil {
		fmt.Fprintf(c.stderr, "sluicectl: %v\n", err)
		return 2
	}
	if _, err := cliflag.ControlPlanes(c.cp); err != nil {
		fmt.Fprintf(c.stderr, "sluicectl: --cp: %v\n", err)
		return 2
	}
	conn, err := dialCP(c.cp, dial)
	if err != nil {
		fmt.Fprintf(c.stderr, "sluicectl: control plane address %q: %v\n", c.cp, err)
		return 1
	}
	c.conn = conn
	return -1
}

// close closes the connections connect and the replicas' asking made.
func (c *cli) close() {
	c.closeReplicas()
	if c.conn != nil {
		c.conn.Close()
	}
}

// cpConn is the control plane's connection as the commands' clients see it,
// made before the command has parsed its flags: the calls go to the
// connection connect made.
type cpConn struct{ c *cli }

func (p cpConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return p.c.conn.Invoke(ctx, method, args, reply, opts...)
}

func (p cpConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return p.c.conn.NewStream(ctx, desc, method, opts...)
}

// parse parses a subcommand's flags, and then dials the control plane for
// a command that calls it. It returns -1 to go on, or the exit status: 0
// after --help (printed on stdout), 2 on a usage error (stderr), as connect
// when it fails.
func (c *cli) parse(fs *flag.FlagSet, args []string) int {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(c.stdout)
		fs.Usage()
		return 0
	case err != nil:
		fs.SetOutput(c.stderr)
		return c.usageError(fs, "%s", cliflag.Explain(fs, err))
	case fs.NArg() > 0:
		fs.SetOutput(c.stderr)
		if f := fs.Lookup("f"); f != nil && f.Value.String() == "" {
			// "sluicectl apply snap.yaml", as some tools take it.
			return c.usageError(fs, "unexpected argument %q: the snapshot goes after -f (-f %s)", fs.Arg(0), fs.Arg(0))
		}
		return c.usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	fs.SetOutput(c.stderr)
	return c.connect()
}

// parseArgs parses a subcommand's flags and its positional arguments, one per
// name, which may come before, between or after the flags. It returns the
// arguments and -1 to go on, or the exit status as parse does.
func (c *cli) parseArgs(fs *flag.FlagSet, args []string, names ...string) ([]string, int) {
	var pos []string
	fs.SetOutput(io.Discard)
	for {
		err := fs.Parse(args)
		switch {
		case errors.Is(err, flag.ErrHelp):
			fs.SetOutput(c.stdout)
			fs.Usage()
			return nil, 0
		case err != nil:
			fs.SetOutput(c.stderr)
			return nil, c.usageError(fs, "%s", cliflag.Explain(fs, err))
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...) // after "--", nothing is a flag
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	fs.SetOutput(c.stderr)
	switch {
	case len(pos) < len(names):
		return nil, c.usageError(fs, "missing %s", strings.Join(names[len(pos):], " "))
	case len(pos) > len(names) && names[0] == "CLUSTER/ENDPOINT" && !strings.Contains(pos[0], "/") && !strings.Contains(pos[1], "/"):
		// "drain web web1": the two names, given apart.
		return nil, c.usageError(fs, "%q %q: CLUSTER/ENDPOINT is one argument, %q", pos[0], pos[1], pos[0]+"/"+pos[1])
	case len(pos) > len(names):
		return nil, c.usageError(fs, "unexpected argument %q", pos[len(names)])
	}
	return pos, c.connect()
}

// usageError reports a missing or bad flag or argument on stderr: the
// message, the command's synopsis, and where its flags are; status 2. The
// whole usage would scroll the message away.
func (c *cli) usageError(fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(c.stderr, "sluicectl %s: %s\nUsage: sluicectl %s\nRun 'sluicectl %s --help' for more.\n",
		fs.Name(), fmt.Sprintf(format, args...), c.synopsis, fs.Name())
	return 2
}

// rpcError prints a failed call and returns status 1. A refused snapshot
// prints every fault with its path; an unreachable control plane says so,
// naming the address; a name or version the control plane does not know
// prints its message, which says which.
func (c *cli) rpcError(cmd string, err error) int {
	st, _ := status.FromError(err)
	if faults, ok := snapshot.FromStatus(err); ok {
		what := "snapshot"
		if strings.HasPrefix(st.Message(), "invalid request") {
			what = "request" // its own fields, not the snapshot's
		}
		noun := "faults"
		if len(faults) == 1 {
			noun = "fault"
		}
		fmt.Fprintf(c.stderr, "sluicectl %s: the control plane refused the %s (%d %s):\n", cmd, what, len(faults), noun)
		for _, f := range faults {
			if what == "snapshot" {
				f = c.placed(f)
			}
			fmt.Fprintln(c.stderr, f.Error())
		}
		return 1
	}
	switch st.Code() {
	case codes.NotFound, codes.FailedPrecondition:
		fmt.Fprintf(c.stderr, "sluicectl %s: %s\n", cmd, st.Message())
	case codes.Unavailable:
		msg := st.Message()
		if len(st.Details()) > 0 {
			// The control plane's own answer: it was reached, but what it
			// needs behind it was not.
			fmt.Fprintf(c.stderr, "sluicectl %s: %s\n", cmd, msg)
			return 1
		}
		msg = dialError(msg)
		fmt.Fprintf(c.stderr, "sluicectl: cannot reach the control plane at %s: %s%s\n", c.cp, msg, c.sec.hint(msg))
	case codes.Unimplemented:
		fmt.Fprintf(c.stderr, "sluicectl %s: the server at %s does not offer this call; is it the --listen address of a sluice-cp as new as sluicectl? (%s)\n",
			cmd, c.cp, st.Message())
	case codes.DeadlineExceeded:
		fmt.Fprintf(c.stderr, "sluicectl: the control plane at %s did not answer within %s\n", c.cp, c.timeout)
	case codes.Canceled:
		fmt.Fprintf(c.stderr, "sluicectl %s: canceled\n", cmd)
	case codes.PermissionDenied:
		// The control plane names its method ("Apply needs role
		// operator", for diff too); the user typed a command.
		msg := neededBy.ReplaceAllString(st.Message(), "; "+cmd+" needs role ")
		fmt.Fprintf(c.stderr, "sluicectl %s: %s (%s)\n", cmd, msg, st.Code())
	default:
		fmt.Fprintf(c.stderr, "sluicectl %s: %s (%s)\n", cmd, st.Message(), st.Code())
	}
	return 1
}

// neededBy is the method in a refusal of the control plane's token check:
// `token "ci" has role viewer; Apply needs role operator`.
var neededBy = regexp.MustCompile(`; [A-Z][A-Za-z]* needs role `)

// dialError is the dial error in msg, an UNAVAILABLE status's message
// (reconnect.DialCause); other messages stay.
func dialError(msg string) string {
	if cause, ok := reconnect.DialCause(msg); ok {
		return cause
	}
	return msg
}

// call bounds one RPC by the global timeout.
func (c *cli) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}
