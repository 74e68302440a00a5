package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-lb/sluice/internal/cliflag"
	"github.com/sluice-lb/sluice/internal/labels"
	"github.com/sluice-lb/sluice/internal/reasons"
	"github.com/sluice-lb/sluice/internal/units"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// load reads -f and prints its faults. ok is false when the snapshot could
// not be read; the status is then 1.
func (c *cli) load(cmd string, paths snapshotPaths) (*sluicev1.Snapshot, bool) {
	var (
		s   *sluicev1.Snapshot
		src *snapshot.Source
		err error
	)
	if paths.stdin() {
		// A snapshot made by a pipe: envsubst < tmpl.yaml | sluicectl apply -f -
		var data []byte
		if data, err = io.ReadAll(c.stdin); err == nil {
			s, src, err = snapshot.ParseFile(data, stdinName)
		}
	} else {
		s, src, err = snapshot.LoadSource(paths...)
	}
	if err != nil {
		c.printFaults(cmd, paths, err)
		return nil, false
	}
	c.source = src
	return s, true
}

// stdinName names standard input (-f -) in faults and warnings.
const stdinName = "stdin"

// snapshotPaths is -f, which may be given several times, as kubectl apply
// takes it: the files and directories are merged in the order given.
type snapshotPaths []string

// fileFlag adds -f to fs.
func fileFlag(fs *flag.FlagSet) *snapshotPaths {
	var p snapshotPaths
	fs.Var(&p, "f", "snapshot to read: a `FILE|DIR`, or - for standard input (required); given again, the files are merged")
	return &p
}

func (p *snapshotPaths) String() string {
	if p == nil {
		return ""
	}
	return strings.Join(*p, ", ")
}

func (p *snapshotPaths) Set(v string) error {
	if v == "" {
		return errors.New("an empty path")
	}
	*p = append(*p, v)
	return nil
}

// stdin reports whether the snapshot is read from standard input.
func (p snapshotPaths) stdin() bool { return len(p) == 1 && p[0] == "-" }

// check returns the usage error of a missing -f, or of standard input
// given with other files, or "".
func (p snapshotPaths) check() string {
	switch {
	case len(p) == 0:
		return "-f is required"
	case len(p) > 1 && slices.Contains(p, "-"):
		return "-f - (standard input) cannot be merged with other files: give it alone"
	}
	return ""
}

// name is how faults and warnings name the files read: "stdin" for -f -.
func (p snapshotPaths) name() string {
	if p.stdin() {
		return stdinName
	}
	return p.String()
}

// placed is fault f of the snapshot the command read, its path as the
// file that holds it writes it, with "(file:line)" after its message: in a
// directory's merged snapshot, clusters[7] may be clusters[0] of b.yaml.
// A fault on a field the file leaves out says so (unless it says it is
// required): the control plane saw the field's default ("", 0), and "must
// be 3 to 261 characters long" alone reads as if the file wrote one too
// short. A fault already placed (as parse faults are), or one c.source
// cannot place, is returned as it is.
func (c *cli) placed(f snapshot.FieldError) snapshot.FieldError {
	if c.source == nil || f.Path == "" || strings.HasSuffix(f.Message, ")") && placedAt.MatchString(f.Message) {
		return f
	}
	local, at, written := c.source.Place(f.Path)
	if at == "" {
		return f
	}
	msg := f.Message
	switch {
	case written || strings.HasPrefix(msg, "is required") || strings.HasPrefix(msg, "required"):
	case msg == "must not be empty":
		msg = "is missing"
	case strings.HasPrefix(msg, "must "):
		msg = "is missing; it " + msg
	default:
		msg = "is missing: " + msg
	}
	return snapshot.FieldError{Path: local, Message: msg + " (" + at + ")"}
}

// placedAt matches the position a parse fault ends with: " (web.yaml:4)".
var placedAt = regexp.MustCompile(` \([^()]*:\d+\)$`)

// printFaults prints every fault of a snapshot, one "path: message" per line.
func (c *cli) printFaults(cmd string, paths snapshotPaths, err error) {
	var faults snapshot.Errors
	if !errors.As(err, &faults) {
		fmt.Fprintf(c.stderr, "sluicectl %s: %v\n", cmd, err)
		return
	}
	noun := "faults"
	if len(faults) == 1 {
		noun = "fault"
	}
	fmt.Fprintf(c.stderr, "sluicectl %s: %s: %d %s:\n", cmd, paths.name(), len(faults), noun)
	for _, f := range faults {
		fmt.Fprintln(c.stderr, c.placed(f).Error())
	}
}

// printWarnings prints the settings of snapshot s, read from paths, that
// can have no effect on stderr, as "path: message (file:line)" under a
// line that counts them. They refuse nothing.
func (c *cli) printWarnings(cmd string, paths snapshotPaths, s *sluicev1.Snapshot) {
	warns := c.warnings(s)
	if len(warns) == 0 {
		return
	}
	fmt.Fprintf(c.stderr, "sluicectl %s: %s: %s:\n", cmd, paths.name(), count(len(warns), "warning"))
	for _, w := range warns {
		fmt.Fprintln(c.stderr, w)
	}
}

// warnings are the settings of snapshot s that can have no effect
// (snapshot.Warnings), each "path: message (file:line)".
func (c *cli) warnings(s *sluicev1.Snapshot) []string {
	var out []string
	for _, w := range snapshot.Warnings(s) {
		out = append(out, c.placed(w).Error())
	}
	return out
}

func cmdValidate(_ context.Context, c *cli, _ sluicev1.ConfigServiceClient, args []string) int {
	fs := c.flags("validate", "validate -f FILE|DIR [-f FILE|DIR ...]", `
Check a snapshot without contacting the control plane: parse it strictly and
apply every validation rule the control plane applies. A directory means every
*.yaml, *.yml and *.json file in it (not recursive), merged; several -f are
merged too, in the order given. What only a node can know is left to the
nodes, which refuse (NACK) a snapshot it fails: whether its listener
addresses can be bound, and whether the files it names (certificates,
keys, CAs) can be read. A private key written <redacted> (as "get" shows
one) stands for the key the control plane keeps with the same
certificate: only the certificate is checked here.

Prints "ok: N clusters, M listeners", or every fault as
"path: message (file:line)" on stderr and exits 1. Settings that can have
no effect where they are (a request hash key on a cluster only TCP
listeners use, say) are printed as warnings on stderr, as apply and diff
print them; they refuse nothing.`)
	file := fileFlag(fs)
	if st := c.parse(fs, args); st >= 0 {
		return st
	}
	if msg := file.check(); msg != "" {
		return c.usageError(fs, "%s", msg)
	}
	s, ok := c.load("validate", *file)
	if !ok {
		return 1
	}
	if err := snapshot.ValidateOffline(s); err != nil {
		c.printFaults("validate", *file, err)
		return 1
	}
	c.printWarnings("validate", *file, s)
	fmt.Fprintf(c.stdout, "ok: %s, %s\n", count(len(s.GetClusters()), "cluster"), count(len(s.GetListeners()), "listener"))
	return 0
}

// author is who history records: $USER@hostname.
func author() string {
	u := os.Getenv("USER")
	if u == "" {
		if cu, err := user.Current(); err == nil {
			u = cu.Username
		}
	}
	if u == "" {
		u = "unknown"
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		return u
	}
	return u + "@" + host
}

func cmdApply(ctx context.Context, c *cli, client sluicev1.ConfigServiceClient, args []string) int {
	fs := c.flags("apply", "apply -f FILE|DIR [-f FILE|DIR ...] [--group NAME [--selector SEL]] [--dry-run] [--comment TEXT] [--if-version V] [--canary SHARE [--canary-window D] [--canary-max-errors PERCENT] [--canary-min-requests N] [--canary-deadline D]] [--wait [--wait-timeout D] [--min-nodes N]]", `
Send a snapshot to the control plane, which validates it and stores it as the
new current version when it differs from the current one; nodes then receive
it. A directory means every *.yaml, *.yml and *.json file in it, merged;
several -f are merged too, in the order given, a name defined in two files
being refused.

The snapshot is for one node group (--group, default "default": every node
that no other group's selector takes). --selector creates the group, or
changes its selector, in the same version: comma-separated requirements that
must all hold, e.g. "role=edge,zone in (a,b)"; also "k!=v", "k notin (..)",
"k" (has the label) and "!k". Without --selector a group that does not exist
is refused.

--canary 10% (or a count of nodes, --canary 2) starts a staged rollout: that
share of the group's connected nodes (draining ones left out) gets the
snapshot first. Once every canary applied it and ran it for
--canary-window with an error rate (5xx and connect errors over requests)
under --canary-max-errors, the control plane
sends it to the rest of the group; if a canary refuses it or its error rate
passes the limit, the rollout halts and the canaries go back to the group's
snapshot. It halts too when the window ends with the canaries having served
fewer than --canary-min-requests (default 0: no traffic at all passes), and
when it waits longer than --canary-deadline (default 10m) with its window
not running, for canaries to connect, apply it or report their counters: a
rollout whose canary died would otherwise wait for it for good.
"sluicectl rollout status|resume|abort" follow and steer it. With --wait,
the command waits for the whole rollout: exit 0 once every node of the
group runs it, 2 if it halts.

A snapshot that does not parse is refused locally and nothing is sent. One the
control plane refuses is not stored: every fault is printed as
"path: message (file:line)" and the exit status is 1. History records the
author as $USER@hostname, or, when the control plane checks tokens, the
token's name.

Prints "applied version N" and one line per changed resource, or
"unchanged (version N)": also when the snapshot only writes out defaults
(weight: 1, connect_timeout: 5s) that the stored one leaves out, or the
other way round, which nodes would run the same. When nodes refused an
earlier version of the group (of the last 100 versions) with this same
snapshot, a warning on stderr names the newest, which nodes and why: they
may refuse it again. The apply still happens.`+ifVersionAbout)
	file := fileFlag(fs)
	w := addWriteFlags(fs, "")
	var sel optionalString
	fs.Var(&sel, "selector", "create the group with, or change its selector to, label selector `SEL`")
	canaryShare := fs.String("canary", "", "staged rollout to `SHARE` of the group first: a percent (10%) or a count of nodes (2)")
	canaryWindow := fs.Duration("canary-window", 30*time.Second, "how long the canaries must run the version under the error limit, as a `DURATION`")
	canaryErrors := fs.String("canary-max-errors", "5%", "the canaries' error rate that halts the rollout, a `PERCENT`")
	canaryRequests := fs.Uint64("canary-min-requests", 0, "the fewest requests the canaries must serve in the window, `N`, or the rollout halts")
	canaryDeadline := fs.Duration("canary-deadline", 10*time.Minute, "how long the rollout may wait for its canaries with its window not running, as a `DURATION`, before it halts")
	if st := c.parse(fs, args); st >= 0 {
		return st
	}
	if st := w.check(c, fs); st >= 0 {
		return st
	}
	req := &sluicev1.ApplyRequest{
		DryRun: *w.dry, Comment: *w.comment, IfVersion: w.ifVersion.get(), Group: *w.group, Selector: sel.get(),
	}
	if *canaryShare != "" {
		canary, err := parseCanary(*canaryShare, *canaryWindow, *canaryErrors, *canaryDeadline)
		if err != nil {
			return c.usageError(fs, "%v", err)
		}
		req.Canary = canary
		req.Canary.MinRequests = *canaryRequests
	} else {
		for _, name := range []string{"canary-window", "canary-max-errors", "canary-min-requests", "canary-deadline"} {
			if cliflag.Given(fs, name) {
				// Without --canary the version would go to every node at once.
				return c.usageError(fs, "--%s is for a staged rollout: give --canary SHARE too", name)
			}
		}
	}
	resp, sent, st := c.applyFile(ctx, client, fs, "apply", *file, req)
	if resp == nil {
		return st
	}
	c.printWarnings("apply", *file, req.GetSnapshot())
	if req.Canary != nil && resp.GetChanged() && !*w.dry {
		c.printApplied(resp, false)
		if !*w.wait {
			fmt.Fprintf(c.stdout, "follow it with: sluicectl rollout status%s\n", groupArg(resp.GetGroup()))
			return 0
		}
		return c.waitRollout(ctx, client, resp, w.until())
	}
	return c.finish(ctx, client, "apply", w, resp, sent)
}

// ifVersionAbout ends the help of every command that stores a version.
const ifVersionAbout = `

With --if-version V nothing is stored unless the group still runs version V
(0: nothing applied yet); otherwise the command says which version is current
and exits 1. A pipeline that read version V, reviewed a diff against it and
then applies cannot overwrite a change someone made in between.

With --wait the command then waits until every connected node of the group
has applied the version (or a newer one): exit 0. Draining nodes
(SIGTERM) are left out: they refuse every version while they shut down.
If a node refuses it (NACK), it waits up to 2s more for the nodes that
have not answered, then prints each node that refused and its reason, how
many applied it and which had not answered, and exits 2; if
--wait-timeout passes first, it prints the nodes still behind and exits 3.
With no node of the group connected it exits 0 at once, each node getting
the version when it connects; --min-nodes N waits as well until at least N
nodes of the group have applied it, and exits 3 if fewer did by the
timeout.`

// writeFlags are the flags of every command that stores a version.
type writeFlags struct {
	group       *string
	dry         *bool
	comment     *string
	ifVersion   *optionalVersion
	wait        *bool
	waitTimeout *time.Duration
	minNodes    *uint
}

// addWriteFlags adds --dry-run, --comment and --if-version to fs;
// defaultComment says what history records without --comment.
func addWriteFlags(fs *flag.FlagSet, defaultComment string) writeFlags {
	w := writeFlags{ifVersion: &optionalVersion{}}
	w.group = groupFlag(fs)
	w.dry = fs.Bool("dry-run", false, "validate and show the changes, store nothing")
	help := "`TEXT` kept in history with the version"
	if defaultComment != "" {
		help += " (default: " + defaultComment + ")"
	}
	w.comment = fs.String("comment", "", help)
	fs.Var(w.ifVersion, "if-version", "store only if the current version is still `V`")
	w.wait = fs.Bool("wait", false, "then wait until every connected node of the group applies the version (exit 0), one refuses it (exit 2), --wait-timeout passes (exit 3) or it is interrupted (exit 130)")
	w.waitTimeout = fs.Duration("wait-timeout", time.Minute, "how long --wait waits, as a `DURATION`")
	w.minNodes = fs.Uint("min-nodes", 0, "with --wait, wait as well until at least `N` nodes of the group applied the version")
	return w
}

// check refuses flag combinations that make no sense; it returns an exit
// status, or -1 when the flags are fine.
func (w writeFlags) check(c *cli, fs *flag.FlagSet) int {
	switch {
	case *w.wait && *w.dry:
		return c.usageError(fs, "--wait has nothing to wait for with --dry-run")
	case *w.waitTimeout <= 0:
		return c.usageError(fs, "--wait-timeout must be positive")
	case !*w.wait && cliflag.Given(fs, "wait-timeout"):
		// Without --wait nothing waits: the timeout would be ignored.
		return c.usageError(fs, "--wait-timeout is for --wait: give --wait too")
	case !*w.wait && cliflag.Given(fs, "min-nodes"):
		return c.usageError(fs, "--min-nodes is for --wait: give --wait too")
	}
	return -1
}

// finish prints the outcome of a write sent at sent and, with --wait,
// waits for the fleet to apply it; it returns the exit status.
func (c *cli) finish(ctx context.Context, client sluicev1.ConfigServiceClient, cmd string, w writeFlags, resp *sluicev1.ApplyResponse, sent time.Time) int {
	c.printApplied(resp, *w.dry)
	c.printRespWarnings(cmd, resp)
	if !*w.wait {
		return 0
	}
	group, version := resp.GetGroup(), resp.GetGroupVersion()
	if group == "" { // a control plane without groups
		group, version = defaultGroup, resp.GetVersion()
	}
	if version == 0 {
		fmt.Fprintf(c.stderr, "sluicectl: group %s has no snapshot yet; nothing to wait for\n", group)
		return 0
	}
	if !resp.GetChanged() {
		// Nothing was sent: the nodes' version is older than this
		// command, and a time since it would mean nothing.
		sent = time.Time{}
	}
	return c.waitApplied(ctx, client, cmd, group, version, sent, w.until())
}

// printRespWarnings prints the control plane's warnings of a write on
// stderr.
func (c *cli) printRespWarnings(cmd string, resp *sluicev1.ApplyResponse) {
	for _, warning := range resp.GetWarnings() {
		fmt.Fprintf(c.stderr, "sluicectl %s: warning: %s\n", cmd, warning)
	}
}

// defaultGroup is the group a command means without --group.
const defaultGroup = "default"

// groupFlag adds --group to fs.
func groupFlag(fs *flag.FlagSet) *string {
	return fs.String("group", "", "the node `GROUP` the command is for (default \"default\")")
}

// optionalString is a string flag that knows whether it was given, even
// as "".
type optionalString struct {
	v   string
	set bool
}

func (o *optionalString) String() string {
	if o == nil {
		return ""
	}
	return o.v
}

func (o *optionalString) Set(s string) error {
	o.v, o.set = s, true
	return nil
}

func (o *optionalString) get() *string {
	if !o.set {
		return nil
	}
	return &o.v
}

// optionalVersion is a version flag that knows whether it was given.
type optionalVersion struct {
	v   uint64
	set bool
}

func (o *optionalVersion) String() string {
	if o == nil || !o.set {
		return ""
	}
	return strconv.FormatUint(o.v, 10)
}

func (o *optionalVersion) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("want a version number, not %q", s)
	}
	o.v, o.set = v, true
	return nil
}

// get returns the version for a request's if_version: nil when not given.
func (o *optionalVersion) get() *uint64 {
	if !o.set {
		return nil
	}
	return &o.v
}

// printApplied prints the outcome of an apply or an endpoint edit: the
// version stored (or that would be) and one indented line per change.
func (c *cli) printApplied(resp *sluicev1.ApplyResponse, dry bool) {
	switch {
	case dry && resp.GetChanged():
		fmt.Fprintf(c.stdout, "dry run: would apply version %d%s\n", appliedVersion(resp), forGroup(resp.GetGroup()))
	case dry:
		fmt.Fprintf(c.stdout, "dry run: unchanged (version %d%s)\n", resp.GetVersion(), ofGroupShown(resp.GetGroup()))
	case resp.GetChanged():
		fmt.Fprintf(c.stdout, "applied version %d%s\n", appliedVersion(resp), forGroup(resp.GetGroup()))
	default:
		fmt.Fprintf(c.stdout, "unchanged (version %d%s)\n", resp.GetVersion(), ofGroupShown(resp.GetGroup()))
	}
	for _, ch := range resp.GetChanges() {
		fmt.Fprintf(c.stdout, "  %s\n", ch)
	}
}

// appliedVersion is the version the first line of printApplied names. An
// endpoint edit during a staged rollout stores two: the group's, then the
// canaries' (resp.Version), which the rollout's own change line names; the
// first line, above the group's changes, names the group's, which --wait
// then waits for.
func appliedVersion(resp *sluicev1.ApplyResponse) uint64 {
	g := resp.GetGroupVersion()
	if g == 0 || g >= resp.GetVersion() {
		return resp.GetVersion()
	}
	for _, ch := range resp.GetResourceChanges() {
		if ch.GetKind() == "rollout" && ch.GetOp() == "changed" {
			return g
		}
	}
	return resp.GetVersion()
}

// count is "1 cluster" or "2 clusters".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// forGroup is " to group NAME" for groups but the default, which fleets
// without groups never need to hear about.
func forGroup(g string) string {
	if g == "" || g == defaultGroup {
		return ""
	}
	return " to group " + g
}

// ofGroupShown names group g after a version it runs: "unchanged
// (version 12, group edge)"; nothing for the default group.
func ofGroupShown(g string) string {
	if g == "" || g == defaultGroup {
		return ""
	}
	return ", group " + g
}

// endpointAbout ends the help of every command that edits one endpoint.
const endpointAbout = `
The control plane edits its current snapshot and stores the result as a new
version, as apply would: it is validated whole, shows in history (the comment
defaults to the command line, such as "drain web/web1" or "set-weight
web/web1 3") and reaches the nodes. An unknown cluster or endpoint stores
nothing and exits 1. The next apply of a file replaces the edit: put it in
the file to keep it.

Prints "applied version N" and the change, or "unchanged (version N)".` + ifVersionAbout

func cmdSetWeight(ctx context.Context, c *cli, client sluicev1.ConfigServiceClient, args []string) int {
	fs := c.flags("set-weight", "set-weight CLUSTER/ENDPOINT WEIGHT [--group NAME] [--dry-run] [--comment TEXT] [--if-version V] [--wait [--wait-timeout D] [--min-nodes N]]", `
Set an endpoint's weight, 0 to 256: its share of new work relative to the
other endpoints of its cluster. 0 takes it out of rotation, as HAProxy's
weight 0: no new clients, but those persisted to it (cookie, stick table)
still go to it. "drain" moves them too.
`+endpointAbout)
	w := addWriteFlags(fs, "the command")
	pos, st := c.parseArgs(fs, args, "CLUSTER/ENDPOINT", "WEIGHT")
	if st >= 0 {
		return st
	}
	if st := w.check(c, fs); st >= 0 {
		return st
	}
	cluster, endpoint, st := c.endpointArg(ctx, client, fs, pos[0], *w.group)
	if st >= 0 {
		return st
	}
	weight, ok := snapshot.ParseWeight(pos[1])
	if !ok {
		return c.usageError(fs, "WEIGHT must be an integer from 0 to %d, not %q", snapshot.MaxWeight, pos[1])
	}
	return c.updateEndpoint(ctx, client, fs.Name(), w, &sluicev1.UpdateEndpointRequest{
		Cluster: cluster, Endpoint: endpoint, Weight: proto.Uint32(weight),
	})
}

// stateCommand returns the command that sets an endpoint's state.
func stateCommand(name string, state sluicev1.AdminState, about string) func(context.Context, *cli, sluicev1.ConfigServiceClient, []string) int {
	return func(ctx context.Context, c *cli, client sluicev1.ConfigServiceClient, args []string) int {
		fs := c.flags(name, name+" CLUSTER/ENDPOINT [--group NAME] [--dry-run] [--comment TEXT] [--if-version V] [--wait [--wait-timeout D] [--min-nodes N]]", about+"\n"+endpointAbout)
		w := addWriteFlags(fs, "the command")
		pos, st := c.parseArgs(fs, args, "CLUSTER/ENDPOINT")
		if st >= 0 {
			return st
		}
		if st := w.check(c, fs); st >= 0 {
			return st
		}
		cluster, endpoint, st := c.endpointArg(ctx, client, fs, pos[0], *w.group)
		if st >= 0 {
			return st
		}
		return c.updateEndpoint(ctx, client, name, w, &sluicev1.UpdateEndpointRequest{
			Cluster: cluster, Endpoint: endpoint, State: state,
		})
	}
}

var (
	cmdDrain = stateCommand("drain", sluicev1.AdminState_ADMIN_STATE_DRAINING, `
Drain an endpoint: it takes no new work, persistent clients included; its
open connections end when its cluster's drain_timeout ends. That is 0 unless
the cluster sets it: TCP sessions are closed at once, and HTTP requests in
flight get 10s to finish. Unlike HAProxy's DRAIN, nothing waits for clients
to leave by themselves: set drain_timeout to give them time, or use
"set-weight CLUSTER/ENDPOINT 0", which keeps its connections and persistent
clients. "enable" undoes it.`)
	cmdDisable = stateCommand("disable", sluicev1.AdminState_ADMIN_STATE_DISABLED, `
Disable an endpoint: it takes no work and is not health checked; its open
connections end when its cluster's drain_timeout ends. "enable" undoes it.`)
	cmdEnable = stateCommand("enable", sluicev1.AdminState_ADMIN_STATE_ACTIVE, `
Make a drained or disabled endpoint active again: it takes work as its weight
and health say. The snapshot is then as it was before the drain or disable.`)
)

// endpointArg splits arg, CLUSTER/ENDPOINT, into its names. When arg is
// not one, it prints the usage error and returns its exit status (else
// -1); for an endpoint's name alone, that error names the endpoints of
// that name in the current snapshot of group, when the control plane
// says: `want CLUSTER/ENDPOINT, not "web1", did you mean "web/web1"?`.
func (c *cli) endpointArg(ctx context.Context, client sluicev1.ConfigServiceClient, fs *flag.FlagSet, arg, group string) (cluster, endpoint string, st int) {
	if cluster, endpoint, ok := splitEndpoint(arg); ok {
		return cluster, endpoint, -1
	}
	var full []string // "cluster/arg" for each cluster with an endpoint arg
	if arg != "" && !strings.Contains(arg, "/") {
		callCtx, cancel := c.call(ctx)
		resp, _ := client.Get(callCtx, &sluicev1.GetRequest{Group: group}) // failed: nil, no hint
		cancel()
		for _, cl := range resp.GetSnapshot().GetClusters() {
			for _, ep := range cl.GetEndpoints() {
				if ep.GetName() == arg {
					full = append(full, strconv.Quote(cl.GetName()+"/"+arg))
				}
			}
		}
	}
	var hint string
	switch n := len(full); {
	case n == 1:
		hint = ", did you mean " + full[0] + "?"
	case n > 1:
		hint = ", did you mean " + strings.Join(full[:n-1], ", ") + " or " + full[n-1] + "?"
	}
	return "", "", c.usageError(fs, "want CLUSTER/ENDPOINT, not %q%s", arg, hint)
}

// splitEndpoint splits "CLUSTER/ENDPOINT"; names hold no slash.
func splitEndpoint(s string) (cluster, endpoint string, ok bool) {
	cluster, endpoint, ok = strings.Cut(s, "/")
	return cluster, endpoint, ok && cluster != "" && endpoint != "" && !strings.Contains(endpoint, "/")
}

// updateEndpoint sends an endpoint edit and prints its outcome.
func (c *cli) updateEndpoint(ctx context.Context, client sluicev1.ConfigServiceClient, cmd string, w writeFlags, req *sluicev1.UpdateEndpointRequest) int {
	req.DryRun, req.Comment, req.IfVersion, req.Author, req.Group = *w.dry, *w.comment, w.ifVersion.get(), author(), *w.group
	callCtx, cancel := c.call(ctx)
	defer cancel()
	sent := time.Now()
	resp, err := client.UpdateEndpoint(callCtx, req)
	if err != nil {
		return c.rpcError(cmd, err)
	}
	return c.finish(ctx, client, cmd, w, resp, sent)
}

func cmdRollback(ctx context.Context, c *cli, client sluicev1.ConfigServiceClient, args []string) int {
	fs := c.flags("rollback", "rollback N [--group NAME] [--dry-run] [--comment TEXT] [--if-version V] [--wait [--wait-timeout D] [--min-nodes N]]", `
Make stored version N current again: the control plane stores N's snapshot
as a new version, which reaches the nodes like any other. History is never
rewritten: the rollback shows in it as a version of its own (the comment
defaults to "rollback to version N"), and its changes are the diff from the
version it replaces. "sluicectl history" lists the versions still kept.
It is the snapshot of one node group that comes back: the group version N
changed, or --group (the group's selector stays as it is now).

Prints "applied version M" and one line per changed resource, or
"unchanged (version M)" when N's snapshot is the current one. When nodes
refused N's snapshot, as version N (history's REFUSED-BY) or as another of
the last 100 versions, a warning on stderr says which and why: they may
refuse the rollback too. The canaries' refusals of a rollout that N started
do not count: the rollback restores the group's snapshot, not the rollout's.

A version whose group held no clusters and no listeners is refused while the
group holds some, as apply refuses a file that lists nothing: to empty the
group on purpose, apply a file that holds "clusters: []".`+ifVersionAbout)
	w := addWriteFlags(fs, `"rollback to version N"`)
	pos, st := c.parseArgs(fs, args, "N")
	if st >= 0 {
		return st
	}
	if st := w.check(c, fs); st >= 0 {
		return st
	}
	version, err := strconv.ParseUint(pos[0], 10, 64)
	if err != nil || version == 0 {
		return c.usageError(fs, "N must be a stored version number (1 or more), not %q", pos[0])
	}
	callCtx, cancel := c.call(ctx)
	defer cancel()
	sent := time.Now()
	resp, err := client.Rollback(callCtx, &sluicev1.RollbackRequest{
		Version: version, DryRun: *w.dry, Comment: *w.comment, IfVersion: w.ifVersion.get(), Author: author(), Group: *w.group,
	})
	if err != nil {
		return c.rpcError("rollback", err)
	}
	return c.finish(ctx, client, "rollback", w, resp, sent)
}

func cmdDiff(ctx context.Context, c *cli, client sluicev1.ConfigServiceClient, args []string) int {
	fs := c.flags("diff", "diff -f FILE|DIR [-f FILE|DIR ...] [--group NAME [--selector SEL]] [-o text|json]", `
Show what "apply -f FILE|DIR" would change, one line per resource
("+ cluster api", "~ cluster web: endpoint web2 weight 1 -> 3", "- listener
db"), or "no changes". The control plane validates the snapshot (a dry-run
apply); nothing is stored. Faults are printed as for apply, with exit status 1.
With --selector it shows what apply with the same --selector would do: create
the group, or change its selector, and which connected nodes move.

Warnings go to stderr as apply prints them, such as when nodes refused an
earlier version with this same snapshot.

-o json prints the version the apply would create, whether it changes
anything, resource_changes: one {op, kind, name, fields} per resource,
op being "added", "removed" or "changed", and warnings: those of the
snapshot's settings ("path: message (file:line)"), then the control
plane's; stderr then has none.`)
	file := fileFlag(fs)
	group := groupFlag(fs)
	var sel optionalString
	fs.Var(&sel, "selector", "as apply --selector: create the group with, or change its selector to, label selector `SEL`")
	o := outputFlag(fs, "text", "json")
	if st := c.parse(fs, args); st >= 0 {
		return st
	}
	req := &sluicev1.ApplyRequest{DryRun: true, Group: *group, Selector: sel.get()}
	resp, _, st := c.applyFile(ctx, client, fs, "diff", *file, req)
	if resp == nil {
		return st
	}
	if *o == "json" {
		// Every warning in the JSON, which a CI job reads, and none
		// on stderr: the snapshot's first, then the control plane's.
		resp.Warnings = append(c.warnings(req.GetSnapshot()), resp.GetWarnings()...)
		return c.printJSON(resp)
	}
	c.printWarnings("diff", *file, req.GetSnapshot())
	if len(resp.GetChanges()) == 0 {
		fmt.Fprintln(c.stdout, "no changes")
	}
	for _, ch := range resp.GetChanges() {
		fmt.Fprintln(c.stdout, ch)
	}
	c.printRespWarnings("diff", resp)
	return 0
}

// applyFile loads the snapshot at file into req and sends it, at sent. On
// failure it has printed why and returns a nil response and the exit
// status.
func (c *cli) applyFile(ctx context.Context, client sluicev1.ConfigServiceClient, fs *flag.FlagSet, cmd string, paths snapshotPaths, req *sluicev1.ApplyRequest) (resp *sluicev1.ApplyResponse, sent time.Time, st int) {
	if msg := paths.check(); msg != "" {
		return nil, sent, c.usageError(fs, "%s", msg)
	}
	s, ok := c.load(cmd, paths)
	if !ok {
		return nil, sent, 1
	}
	req.Snapshot, req.Author = s, author()
	ctx, cancel := c.call(ctx)
	defer cancel()
	sent = time.Now()
	resp, err := client.Apply(ctx, req)
	if err != nil {
		return nil, sent, c.rpcError(cmd, err)
	}
	return resp, sent, 0
}

// outputFlag adds -o with the given formats, the first being the default.
// Parsing the flags refuses any other value, naming the formats.
func outputFlag(fs *flag.FlagSet, formats ...string) *string {
	o := &choice{value: formats[0], of: formats}
	fs.Var(o, "o", "output `FORMAT`: "+strings.Join(formats, " or "))
	return &o.value
}

// choice is a flag value that must be one of a list.
type choice struct {
	value string
	of    []string
}

func (c *choice) String() string {
	if c == nil {
		return ""
	}
	return c.value
}

func (c *choice) Set(s string) error {
	if !slices.Contains(c.of, s) {
		return fmt.Errorf("must be %s", strings.Join(c.of, " or "))
	}
	c.value = s
	return nil
}

// printJSON prints a response as protojson with the proto field names.
func (c *cli) printJSON(m proto.Message) int {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		fmt.Fprintf(c.stderr, "sluicectl: %v\n", err)
		return 1
	}
	// protojson varies its whitespace on purpose; give scripts and eyes a
	// stable layout.
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		fmt.Fprintf(c.stderr, "sluicectl: %v\n", err)
		return 1
	}
	out.WriteByte('\n')
	c.stdout.Write(out.Bytes())
	return 0
}

func cmdGet(ctx context.Context, c *cli, client sluicev1.ConfigServiceClient, args []string) int {
	fs := c.flags("get", "get [--group NAME] [--version N] [-o yaml|json] [--show-secrets]", `
Print a node group's current snapshot, or its snapshot in stored version N
(without --group, of the group version N changed, as for rollback), in the
form apply reads: YAML (headed by a "# version N" comment, N being the
version that last changed the group's snapshot, which names the group when
it is not default, and the nodes that refused it, if any) or JSON. During
a staged rollout the group's snapshot is printed, and a second comment says
which version its canaries run; --version of that version prints theirs.
Private keys show as <redacted>; applied back, <redacted> keeps the stored
key.
While the control plane cannot reach its configuration store (etcd), the
current snapshot printed is the one it sends its nodes: stderr says so,
and the exit status is 1.`)
	group := groupFlag(fs)
	version := fs.Uint64("version", 0, "stored version `N` to print (default: the current one)")
	secrets := fs.Bool("show-secrets", false, "print private keys as stored")
	o := outputFlag(fs, "yaml", "json")
	if st := c.parse(fs, args); st >= 0 {
		return st
	}
	if *version == 0 && cliflag.Given(fs, "version") {
		// 0 asks the control plane for the current snapshot: printing it
		// for a version asked for by number would answer another question.
		return c.usageError(fs, "--version must be a stored version number (1 or more), not 0")
	}
	ctx, cancel := c.call(ctx)
	defer cancel()
	resp, err := client.Get(ctx, &sluicev1.GetRequest{Version: *version, ShowSecrets: *secrets, Group: *group})
	if err != nil {
		return c.rpcError("get", err)
	}
	var b []byte
	if *o == "json" {
		b, err = snapshot.MarshalJSON(resp.GetSnapshot())
	} else {
		b, err = snapshot.Marshal(resp.GetSnapshot())
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "sluicectl get: %v\n", err)
		return 1
	}
	if *o == "yaml" {
		info := resp.GetInfo()
		fmt.Fprintf(c.stdout, "# version %d", info.GetVersion())
		if g := cmp.Or(info.GetGroup(), defaultGroup); g != defaultGroup && info.GetVersion() != 0 {
			// apply -f of this file needs --group too.
			fmt.Fprintf(c.stdout, " of group %s", g)
		}
		if info.GetVersion() == 0 {
			// The "clusters: []" below is no stored snapshot.
			// The group asked for, or the one --version N changed.
			fmt.Fprintf(c.stdout, ": nothing is applied to group %s yet", cmp.Or(info.GetGroup(), *group, defaultGroup))
		}
		if info.GetCreated() != nil {
			fmt.Fprintf(c.stdout, ", %s", info.GetCreated().AsTime().Local().Format(time.RFC3339))
		}
		if info.GetAuthor() != "" {
			fmt.Fprintf(c.stdout, " by %s", oneLine(info.GetAuthor()))
		}
		if info.GetRefusedBy() > 0 {
			fmt.Fprintf(c.stdout, "; refused by %s", refusedText(info))
		}
		fmt.Fprintln(c.stdout)
		if r := resp.GetRollout(); r != "" {
			fmt.Fprintf(c.stdout, "# %s\n", oneLine(r))
		}
	}
	c.stdout.Write(b)
	return c.storeUnreachable("get", resp.GetStoreUnreachable())
}

// storeUnreachable ends a read that the control plane answered without its
// configuration store (etcd down), with what it sends its nodes instead:
// it says so on stderr, and the command exits 1, so that a script does not
// take the answer for the store's.
func (c *cli) storeUnreachable(cmd, why string) int {
	if why == "" {
		return 0
	}
	fmt.Fprintf(c.stderr, "sluicectl %s: %s\n", cmd, why)
	return 1
}

// historyChanges is how many of a version's changes its history row names.
const historyChanges = 10

func cmdHistory(ctx context.Context, c *cli, client sluicev1.ConfigServiceClient, args []string) int {
	fs := c.flags("history", "history [--group NAME] [--limit N] [-o table|json]", `
List stored versions, newest first: version (the newest marked with *),
when it was stored, by whom, the node group it changed, the nodes that
refused it (NACK), what it changed (the first 10 changes, and how many
more) and the comment given. --group lists only the versions that changed
that group, and marks the one its nodes are sent instead: during a staged
rollout, the one that group's nodes outside the canary run. A version's
refusals are kept with it, also after the node applied it (a restarted
node is sent it again); -o json gives every change, each node's reason
and when (the first 10), and how many nodes refused it.`)
	limit := fs.Uint("limit", 0, "show at most `N` versions (default: all kept)")
	group := fs.String("group", "", "list only the versions that changed node `GROUP`")
	o := outputFlag(fs, "table", "json")
	if st := c.parse(fs, args); st >= 0 {
		return st
	}
	ctx, cancel := c.call(ctx)
	defer cancel()
	resp, err := client.History(ctx, &sluicev1.HistoryRequest{Limit: uint32(min(*limit, 1<<32-1)), Group: *group})
	if err != nil {
		return c.rpcError("history", err)
	}
	if *o == "json" {
		return c.printJSON(resp)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tCREATED\tAUTHOR\tGROUP\tREFUSED-BY\tCHANGES\tCOMMENT")
	for _, v := range resp.GetVersions() {
		ver := fmt.Sprint(v.GetVersion())
		if v.GetVersion() == resp.GetCurrent() {
			ver += "*"
		}
		// An apply of thousands of clusters changes thousands: the row
		// names the first few, -o json every one.
		list := v.GetChanges()
		changes := strings.Join(list[:min(len(list), historyChanges)], "; ")
		if more := len(list) - historyChanges; more > 0 {
			changes += fmt.Sprintf("; +%d more (-o json lists them)", more)
		}
		if changes == "" {
			changes = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ver, timeText(v.GetCreated().AsTime(), v.GetCreated() != nil),
			oneLine(orDash(v.GetAuthor())), orDash(v.GetGroup()), refusedText(v), oneLine(changes), oneLine(orDash(v.GetComment())))
	}
	tw.Flush()
	return 0
}

// refusedText names the nodes that refused a version in history's table:
// the first three, and how many more.
func refusedText(v *sluicev1.VersionInfo) string {
	const named = 3
	rs := v.GetRefusals()
	if len(rs) == 0 {
		return "-"
	}
	names := make([]string, 0, named)
	for _, r := range rs[:min(len(rs), named)] {
		names = append(names, r.GetNode())
	}
	text := strings.Join(names, ",")
	if more := int(v.GetRefusedBy()) - len(names); more > 0 {
		text += fmt.Sprintf(" +%d", more)
	}
	return text
}

func cmdNodes(ctx context.Context, c *cli, client sluicev1.ConfigServiceClient, args []string) int {
	fs := c.flags("nodes", "nodes [--group GROUP] [-o table|json]", `
List the dataplane nodes that are or were connected (a disconnected one
until sluice-cp --forget-nodes-after, 24h, passed): id, labels, the node
group its labels put it in, state (connected; draining: it began to shut
down, accepts no new connections and finishes what it has; disconnected), the
version it applied (ACKed), the version last sent to it, and its last refusal
(NACK) as "vN: error" when it has not applied a newer version since (a
restarted node's new process starts with none). A node that no group
takes, or that two groups' selectors match, shows "none" and why: it is
sent nothing new and keeps what it runs. A disconnected node shows the
group it was in, or why none took it, when it was last connected: groups
changed since are not reflected until it connects again. With control-plane
replicas on one etcd, REPLICA names the replica the node's streams are on
(or were on last, when it is disconnected); when etcd does not answer, the
replica asked lists its own nodes, says so on stderr, and the exit status
is 1; with --cp listing several replicas, each is then asked for its own
nodes, and they are all listed. --group lists only the nodes a group
takes.`)
	group := groupFilter(fs)
	o := outputFlag(fs, "table", "json")
	if st := c.parse(fs, args); st >= 0 {
		return st
	}
	if st := c.checkGroup(ctx, client, "nodes", *group); st >= 0 {
		return st
	}
	resp, notes, err := c.fleetNodes(ctx, client)
	if err != nil {
		return c.rpcError("nodes", err)
	}
	if *group != "" {
		resp.Nodes = slices.DeleteFunc(resp.Nodes, func(n *sluicev1.NodeStatus) bool { return n.GetGroup() != *group })
	}
	if *o == "json" {
		return c.printPartial("nodes", resp, resp.GetIncomplete(), notes...)
	}
	// Replicas on one etcd name where each node is; a lone control plane
	// names none, and gets no REPLICA column.
	replicas := slices.ContainsFunc(resp.GetNodes(), func(n *sluicev1.NodeStatus) bool { return n.GetReplica() != "" })
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	if replicas {
		fmt.Fprintln(tw, "ID\tLABELS\tGROUP\tSTATE\tREPLICA\tAPPLIED\tSENT\tLAST-NACK")
	} else {
		fmt.Fprintln(tw, "ID\tLABELS\tGROUP\tSTATE\tAPPLIED\tSENT\tLAST-NACK")
	}
	for _, n := range resp.GetNodes() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t", n.GetId(), labelsText(n.GetLabels()), nodeGroup(n), nodeState(n))
		if replicas {
			fmt.Fprintf(tw, "%s\t", orDash(n.GetReplica()))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", versionText(n.GetAckedVersion()), versionText(n.GetSentVersion()), nackText(n))
	}
	tw.Flush()
	return c.incomplete("nodes", resp.GetIncomplete(), notes...)
}

// incomplete says on stderr why an answer lacks part of the fleet: why
// the replica asked could not read the other replicas' nodes (why), and
// why each other replica could not be asked for what its nodes reported
// (unasked, from askReplicas). It returns the exit status: 1 when it said
// anything, as the fleet was not all read.
func (c *cli) incomplete(cmd, why string, unasked ...string) int {
	if why != "" {
		unasked = append([]string{why}, unasked...)
	}
	for _, w := range unasked {
		fmt.Fprintf(c.stderr, "sluicectl %s: %s\n", cmd, w)
	}
	if len(unasked) > 0 {
		return 1
	}
	return 0
}

// printPartial prints m as JSON and then says why it is incomplete, if it
// is (incomplete).
func (c *cli) printPartial(cmd string, m proto.Message, why string, unasked ...string) int {
	if st := c.printJSON(m); st != 0 {
		return st
	}
	return c.incomplete(cmd, why, unasked...)
}

// nackText is a node's LAST-NACK: "vN: error", or "-".
func nackText(n *sluicev1.NodeStatus) string {
	if n.GetNackedVersion() == 0 && n.GetNackError() == "" {
		return "-"
	}
	return fmt.Sprintf("v%d: %s", n.GetNackedVersion(), oneLine(n.GetNackError()))
}

// nodeGroup is a node's GROUP in the nodes table.
func nodeGroup(n *sluicev1.NodeStatus) string {
	switch {
	case n.GetGroup() != "":
		return n.GetGroup()
	case n.GetGroupProblem() != "":
		return "none (" + n.GetGroupProblem() + ")"
	}
	return "-" // not placed yet: nothing published
}

// nodeState is a node's STATE in the nodes table.
func nodeState(n *sluicev1.NodeStatus) string {
	switch {
	case !n.GetConnected():
		return "disconnected"
	case n.GetDraining():
		return "draining"
	default:
		return "connected"
	}
}

// maxConnsLimit is the most records ListConns returns at once (its
// request's limit, validated by the control plane).
const maxConnsLimit = 100000

func cmdConns(ctx context.Context, c *cli, client sluicev1.ConfigServiceClient, args []string) int {
	fs := c.flags("conns", "conns [--limit N] [--node ID] [--group GROUP] [--listener L] [--cluster C] [--endpoint E] [--reason R,...] [--min-duration D] [-o table|json]", `
List the most recent client connections the nodes reported, newest first:
when each started, node, listener, client address, the cluster/endpoint that
served it (the last request's, for HTTP), how long it lived, bytes in (from
the client) and out (to the client), HTTP requests, and why it closed. An
HTTP connection goes on after a request the node answered with an error
(a 502, 503 or 504, or a rule's refusal); REASON then also says how many
failed and why, e.g. "client_closed (3 failed: no_endpoint, denied)", and
--reason matches those reasons too. A keep-alive connection is filed
under the cluster/endpoint of its last request, whatever its earlier ones
went to, failed ones included: each request's is in the node's access log
(sluice-dp --access-log).
With control-plane replicas on one etcd, each replica keeps the records of
its own nodes: conns asks each replica that has nodes at its name, as stats
does, and merges the records; it exits 1 naming any it could not ask.

Reasons (--reason takes their full names too, as -o json writes them:
CLOSE_REASON_SHUTDOWN):
`+wrap(strings.Join(reasons.Names(), ", "), 76, "  "))
	limit := fs.Uint("limit", 0, "show at most `N` records (default: the control plane's, 100)")
	node := fs.String("node", "", "only connections of node `ID`")
	group := groupFilter(fs)
	listener := fs.String("listener", "", "only connections accepted by listener `L`")
	cluster := fs.String("cluster", "", "only connections served by cluster `C` (HTTP: in their last request)")
	endpoint := fs.String("endpoint", "", "only connections served by endpoint `E` (HTTP: in their last request; the access log has every request's)")
	reasonList := fs.String("reason", "", "only connections that closed for one of the comma-separated reasons `R,...`, or had a request fail for one")
	minDur := fs.Duration("min-duration", 0, "only connections that lived at least `D` (e.g. 30s)")
	o := outputFlag(fs, "table", "json")
	if st := c.parse(fs, args); st >= 0 {
		return st
	}
	if *minDur < 0 {
		return c.usageError(fs, "--min-duration must not be negative, not %s", *minDur)
	}
	if *limit > maxConnsLimit {
		return c.usageError(fs, "--limit must be at most %d, not %d", maxConnsLimit, *limit)
	}
	var want []sluicev1.CloseReason
	for r := range strings.SplitSeq(*reasonList, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		v, ok := reasons.Parse(r)
		if !ok {
			if near := snapshot.Closest(r, reasons.Names()); near != "" {
				return c.usageError(fs, "--reason %q is not a reason, did you mean %q? (one of %s)", r, near, strings.Join(reasons.Names(), ", "))
			}
			return c.usageError(fs, "--reason %q is not one of %s", r, strings.Join(reasons.Names(), ", "))
		}
		want = append(want, v)
	}
	req := &sluicev1.ListConnsRequest{
		Limit: uint32(*limit), NodeId: *node, Group: *group, Listener: *listener, Cluster: *cluster, Endpoint: *endpoint,
		Reasons: want,
	}
	if *minDur > 0 {
		req.MinDuration = durationpb.New(*minDur)
	}
	resp, unasked, err := c.fleetConns(ctx, client, req)
	if err != nil {
		return c.rpcError("conns", err)
	}
	if *o == "json" {
		return c.printPartial("conns", resp, resp.GetIncomplete(), unasked...)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "START\tNODE\tLISTENER\tCLIENT\tCLUSTER/ENDPOINT\tDURATION\tIN\tOUT\tREQS\tREASON")
	for _, r := range resp.GetRecords() {
		served := "-"
		if r.GetCluster() != "" || r.GetEndpoint() != "" {
			served = orDash(r.GetCluster()) + "/" + orDash(r.GetEndpoint())
		}
		dur := "-"
		if r.GetDuration() != nil {
			dur = r.GetDuration().AsDuration().Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n",
			timeText(r.GetStart().AsTime(), r.GetStart() != nil), orDash(r.GetNodeId()), orDash(r.GetListener()),
			orDash(r.GetClientAddress()), served, dur, units.Bytes(r.GetBytesIn()), units.Bytes(r.GetBytesOut()),
			r.GetRequests(), reasonText(r))
	}
	tw.Flush()
	return c.incomplete("conns", resp.GetIncomplete(), unasked...)
}

// reasonText is conns' REASON: why r closed and, when the node answered
// any of its requests with an error, how many and why, as in
// "client_closed (2 failed: server_timeout, no_endpoint)", in the enum's
// order. A connection whose one failed request closed it (a refused
// request) is its reason alone. A rule's refusal names the rule, as in
// "denied by blacklist".
func reasonText(r *sluicev1.ConnRecord) string {
	reason := reasons.Name(r.GetCloseReason())
	if r.GetCloseReason() == sluicev1.CloseReason_CLOSE_REASON_DENIED && r.GetRule() != "" {
		reason += " by " + r.GetRule()
	}
	n, fs := r.GetFailedRequests(), r.GetFailures()
	if n == 0 || n == 1 && len(fs) == 1 && fs[0] == r.GetCloseReason() {
		return reason
	}
	if len(fs) == 0 { // from a node that did not say why
		return fmt.Sprintf("%s (%d failed)", reason, n)
	}
	return fmt.Sprintf("%s (%d failed: %s)", reason, n, strings.Join(reasons.NameEach(fs), ", "))
}

// wrap breaks s into lines of at most width bytes at spaces, each line
// starting with indent.
func wrap(s string, width int, indent string) string {
	var b strings.Builder
	line := 0
	for i, w := range strings.Fields(s) {
		if i > 0 && line+1+len(w) > width {
			b.WriteString("\n")
			line = 0
		}
		if line == 0 {
			b.WriteString(indent)
			line = len(indent)
		} else {
			b.WriteByte(' ')
			line++
		}
		b.WriteString(w)
		line += len(w)
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps text that others wrote (a comment, an author, a node's
// error) on one line of a table or a comment, and shows the control
// characters a terminal would act on as \x1b and the like: a comment
// cannot recolour, hide or rewrite what the operator reads.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func timeText(t time.Time, ok bool) string {
	if !ok {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func versionText(v uint64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprint(v)
}

func labelsText(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	return oneLine(labels.Text(m))
}

func cmdStats(ctx context.Context, c *cli, client sluicev1.ConfigServiceClient, args []string) int {
	fs := c.flags("stats", "stats [--node ID] [--group GROUP] [--cluster NAME] [-o table|json]", `
Show what each node last reported of its endpoints (a node reports within a
quarter of a second of a change of health or configuration, and every second
for its counters), one table per node: health, configured weight, requests and
sessions in progress (ACTIVE), sockets open to the endpoint (CONNS, pooled
ones included), requests and sessions sent, bytes received from (IN) and
sent to (OUT) the endpoint, HTTP 5xx answers, failed connects, how long
the endpoint has been in its health (SINCE) and why (DETAIL: the last failed
health check; without checks, the last failed connect, or "no health
check"). Counters run from when the node first had the endpoint at its
address (a new address starts them again).

Health: UP takes work; DOWN failed its health checks; CHECKING has no check
result yet (and takes work); DRAINING and DISABLED were set by an operator;
EJECTED was taken out by outlier detection. A node that went away is shown
as disconnected, with its last report. With control-plane replicas on one
etcd, each node reports to the replica its streams are on, and stats asks
each replica that has nodes at its name (its --replica; by default its
--listen address, or host name and port for a wildcard one), with the same
--ca, --cert, --key and --token. A node whose replica could not be asked is
shown by that replica's name, without endpoints, and stats exits 1 saying
why.`)
	node := fs.String("node", "", "only node `ID`")
	group := groupFilter(fs)
	cluster := fs.String("cluster", "", "only the endpoints of cluster `NAME`")
	o := outputFlag(fs, "table", "json")
	if st := c.parse(fs, args); st >= 0 {
		return st
	}
	if st := c.checkGroup(ctx, client, "stats", *group); st >= 0 {
		return st
	}
	resp, unasked, err := c.fleetStats(ctx, client, &sluicev1.GetStatsRequest{NodeId: *node, Cluster: *cluster})
	if err != nil {
		return c.rpcError("stats", err)
	}
	keepGroup(resp, *group)
	if *o == "json" {
		return c.printPartial("stats", resp, resp.GetIncomplete(), unasked...)
	}
	if len(resp.GetNodes()) == 0 {
		what := "no node has reported endpoint stats"
		if *node != "" {
			what += fmt.Sprintf(" as %q", *node)
		}
		if *group != "" {
			what += fmt.Sprintf(" in group %q", *group)
		}
		if *cluster != "" {
			what += fmt.Sprintf(" for cluster %q", *cluster)
		}
		fmt.Fprintln(c.stdout, what)
		return c.incomplete("stats", resp.GetIncomplete(), unasked...)
	}
	now := clock()
	for i, n := range resp.GetNodes() {
		if i > 0 {
			fmt.Fprintln(c.stdout)
		}
		if n.GetReplica() != "" {
			fmt.Fprintln(c.stdout, elsewhere(n))
			continue
		}
		state, reported := "connected", "reported"
		if !n.GetConnected() {
			state, reported = "disconnected", "last report"
		}
		if v := n.GetVersion(); v != "" {
			state += ", version " + v
		}
		fmt.Fprintf(c.stdout, "%s (%s, %s %s ago)\n", n.GetNodeId(), state, reported, units.Age(n.GetReportedAt().AsTime(), now))
		// SINCE is as of the report a node that went away made last: what
		// it says of its endpoints stopped there, not at the present.
		asOf := now
		if !n.GetConnected() && n.GetReportedAt() != nil {
			asOf = n.GetReportedAt().AsTime()
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CLUSTER/ENDPOINT\tADDRESS\tHEALTH\tWEIGHT\tACTIVE\tCONNS\tREQUESTS\tBYTES IN\tBYTES OUT\t5XX\tCONN ERR\tSINCE\tDETAIL")
		for _, ep := range n.GetEndpoints() {
			weight := fmt.Sprint(ep.GetWeight())
			if ep.GetBackup() {
				weight += " (backup)"
			}
			since := "-"
			if ep.GetSince() != nil {
				since = units.Age(ep.GetSince().AsTime(), asOf)
			}
			fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%d\t%d\t%s\t%s\n",
				ep.GetCluster(), ep.GetEndpoint(), orDash(ep.GetAddress()), healthText(ep.GetHealth()), weight,
				ep.GetActive(), ep.GetConns(), ep.GetRequests(), units.Bytes(ep.GetBytesIn()), units.Bytes(ep.GetBytesOut()),
				ep.GetResponses_5Xx(), ep.GetConnectErrors(), since, oneLine(orDash(ep.GetDetail())))
		}
		tw.Flush()
	}
	return c.incomplete("stats", resp.GetIncomplete(), unasked...)
}

// clock tells the time ages are counted to; tests fix it.
var clock = time.Now

// elsewhere is the line stats and top show for a node that reports to
// another control-plane replica than the one asked (NodeStats.replica).
func elsewhere(n *sluicev1.NodeStats) string {
	return fmt.Sprintf("%s (connected to replica %s, which has its stats)", n.GetNodeId(), n.GetReplica())
}

// healthText is an endpoint's HEALTH in the stats table: the enum's name
// without its prefix.
func healthText(h sluicev1.EndpointHealth) string {
	if h == sluicev1.EndpointHealth_ENDPOINT_HEALTH_UNSPECIFIED {
		return "-"
	}
	return strings.TrimPrefix(h.String(), "ENDPOINT_HEALTH_")
}

func cmdShutdownSessions(ctx context.Context, c *cli, client sluicev1.ConfigServiceClient, args []string) int {
	fs := c.flags("shutdown-sessions", "shutdown-sessions CLUSTER/ENDPOINT [--group GROUP]", `
Close every connection to an endpoint on every connected node, now, as
HAProxy's "shutdown sessions server": TCP sessions, pooled HTTP connections
and those with a request in flight (which gets a 502). The endpoint stays in
the snapshot and takes new work at once; its closed sessions are recorded
with reason "shutdown" (see conns). Nothing is stored.

Prints one line per node, "node-1  closed 37 connections", or why that node
failed; with node groups, a node of a group whose snapshot lacks the
endpoint is left out, and --group closes them on the nodes of one group
only (the edge nodes of one site, say). Exits 1 if the cluster or endpoint
is in no group's current snapshot (or not in --group's), if --group names
no group, if any node failed (one that did not answer in time included: 5s
on the replica you call, 8s on another), or if the replica you call cannot
read etcd to learn which nodes the others have (then no node was sent it).`)
	group := groupFilter(fs)
	pos, st := c.parseArgs(fs, args, "CLUSTER/ENDPOINT")
	if st >= 0 {
		return st
	}
	cluster, endpoint, st := c.endpointArg(ctx, client, fs, pos[0], *group)
	if st >= 0 {
		return st
	}
	ctx, cancel := c.call(ctx)
	defer cancel()
	resp, err := client.ShutdownSessions(ctx, &sluicev1.ShutdownSessionsRequest{Cluster: cluster, Endpoint: endpoint, Group: *group})
	if err != nil {
		return c.rpcError("shutdown-sessions", err)
	}
	if len(resp.GetResults()) == 0 {
		of := ""
		if *group != "" {
			of = " of group " + *group
		}
		fmt.Fprintf(c.stdout, "no node%s is connected: nothing to close\n", of)
		return 0
	}
	exit := 0
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	for _, r := range resp.GetResults() {
		if r.GetError() != "" {
			fmt.Fprintf(tw, "%s\tfailed: %s\n", r.GetNodeId(), oneLine(r.GetError()))
			exit = 1
			continue
		}
		noun := "connections"
		if r.GetClosed() == 1 {
			noun = "connection"
		}
		fmt.Fprintf(tw, "%s\tclosed %d %s\n", r.GetNodeId(), r.GetClosed(), noun)
	}
	tw.Flush()
	return exit
}
