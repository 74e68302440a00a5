package stats

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	"github.com/sluice-lb/sluice/internal/loopback"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// sink is a control plane's StatsService: it passes every report on, and
// answers a half-close with a summary, as the real one does.
const defaultTestTimeout = 10 * time.Second

type sink struct {
	sluicev1.UnimplementedStatsServiceServer
	reports chan *sluicev1.StatsReport
}

func (s *sink) Report(st grpc.ClientStreamingServer[sluicev1.StatsReport, sluicev1.ReportSummary]) error {
	var n uint64
	for {
		r, err := st.Recv()
		if err == io.EOF {
			return st.SendAndClose(&sluicev1.ReportSummary{Records: n})
		}
		if err != nil {
			return err
		}
		n += uint64(len(r.GetRecords()))
		s.reports <- r
	}
}

// startSink serves a sink and returns it with a connection to it.
func startSink(t *testing.T) (*sink, *grpc.ClientConn) {
	t.Helper()
	s := &sink{reports: make(chan *sluicev1.StatsReport, 64)}
	return s, serveStats(t, s)
}

// serveStats serves impl as the StatsService on loopback and returns a
// connection to it; both end with the test.
func serveStats(t *testing.T, impl sluicev1.StatsServiceServer) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	sluicev1.RegisterStatsServiceServer(srv, impl)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// run runs r on conn until the returned stop is called (or the test ends).
func run(t *testing.T, r *Reporter, conn grpc.ClientConnInterface) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx, conn, "n1"); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// next returns the sink's next report, failing the test after a while.
func (s *sink) next(t *testing.T) *sluicev1.StatsReport {
	t.Helper()
	select {
	case rep := <-s.reports:
		return rep
	case <-time.After(defaultTestTimeout):
		t.Fatal("no report")
		return nil
	}
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestRecordNeverBlocks: a full queue drops and counts; what was queued
// reaches the control plane with the drop count.
func TestRecordNeverBlocks(t *testing.T) {
	r := NewReporter(4, quiet())
	for i := range 10 {
		r.Record(&conntrack.ConnInfo{Listener: "l", Requests: uint64(i)})
	}
	if r.Dropped() != 6 {
		t.Fatalf("dropped %d, want 6 (queue of 4, 10 records)", r.Dropped())
	}

	s, conn := startSink(t)
	run(t, r, conn)

	var got []*sluicev1.ConnRecord
	var dropped uint64
	deadline := time.After(5 * time.Second)
	first := true
	for len(got) < 4 {
		select {
		case rep := <-s.reports:
			if first && rep.GetNodeId() != "n1" {
				t.Errorf("first report names node %q, want n1", rep.GetNodeId())
			}
			first = false
			got = append(got, rep.GetRecords()...)
			dropped += rep.GetDropped()
		case <-deadline:
			t.Fatalf("got %d records, want 4", len(got))
		}
	}
	if dropped != 6 {
		t.Errorf("reported dropped = %d, want 6", dropped)
	}
	for i, rec := range got {
		if rec.GetRequests() != uint64(i) || rec.GetListener() != "l" {
			t.Errorf("record %d = %v, want listener l with %d requests (queue order)", i, rec, i)
		}
	}
	// Sent counts a batch once Send returned, which may be after the
	// control plane has it.
	for wait := time.Now().Add(5 * time.Second); r.Sent() != 4 && time.Now().Before(wait); {
		time.Sleep(5 * time.Millisecond)
	}
	if r.Sent() != 4 {
		t.Errorf("Sent = %d, want 4", r.Sent())
	}
}

// TestDrainingReportsAtOnce: Draining sends a report right away, without
// records and without waiting for a batch, and returns once the control
// plane has it; the reopened stream says draining from its first message.
func TestDrainingReportsAtOnce(t *testing.T) {
	r := NewReporter(16, quiet())
	r.interval = time.Hour // no batch goes out on its own
	s, conn := startSink(t)
	run(t, r, conn)
	if rep := s.next(t); rep.GetNodeId() != "n1" || rep.GetDraining() {
		t.Fatalf("first report = %v, want node n1, not draining", rep)
	}

	r.drainFor = time.Hour // so only the confirmation can end Draining
	if !returns(r.Draining) {
		t.Fatal("Draining did not return: the control plane's confirmation never came")
	}
	// Draining returned: the report is there already, before any stop.
	select {
	case rep := <-s.reports:
		if !rep.GetDraining() || len(rep.GetRecords()) != 0 {
			t.Errorf("report sent by Draining = %v, want draining with no records", rep)
		}
	default:
		t.Fatal("Draining returned before the control plane had a draining report")
	}
	if rep := s.next(t); rep.GetNodeId() != "n1" || !rep.GetDraining() {
		t.Errorf("first report of the reopened stream = %v, want node n1, draining", rep)
	}
}

// returns reports whether f returned within defaultTestTimeout.
func returns(f func()) bool {
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(defaultTestTimeout):
		return false
	}
}

// TestDrainingBeforeRun: without Run, Draining returns at once; Run then
// says draining from the start, on every report, records or not.
func TestDrainingBeforeRun(t *testing.T) {
	r := NewReporter(16, quiet())
	r.interval = 10 * time.Millisecond
	r.drainFor = time.Hour // a wait for a confirmation would not end
	if !returns(r.Draining) {
		t.Fatal("Draining without Run waited, want it to return at once")
	}
	s, conn := startSink(t)
	run(t, r, conn)
	if rep := s.next(t); rep.GetNodeId() != "n1" || !rep.GetDraining() {
		t.Fatalf("first report = %v, want node n1, draining", rep)
	}
	r.Record(&conntrack.ConnInfo{Listener: "last"})
	var empty, withRecord int
	for empty < 3 || withRecord == 0 {
		rep := s.next(t)
		if !rep.GetDraining() {
			t.Fatalf("report after Draining without draining: %v", rep)
		}
		if len(rep.GetRecords()) == 0 {
			empty++
		} else if rep.GetRecords()[0].GetListener() == "last" {
			withRecord++
		}
	}
}

// refusedConn is a connection to an address that refuses connections: a
// control plane that is not there.
func refusedConn(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(loopback.RefusingAddr(t), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestDrainingWithoutControlPlane: with nobody to tell, Draining gives up
// after DrainingTimeout rather than holding the shutdown.
func TestDrainingWithoutControlPlane(t *testing.T) {
	conn := refusedConn(t)
	r := NewReporter(16, quiet())
	run(t, r, conn)
	for deadline := time.Now().Add(defaultTestTimeout); r.running.Load() == 0; { // Draining waits only for a Run
		if time.Now().After(deadline) {
			t.Fatal("Run did not start")
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	r.Draining()
	if took := time.Since(start); took < DrainingTimeout/2 || took > DrainingTimeout+2*time.Second {
		t.Errorf("Draining with no control plane took %v, want about %v", took, DrainingTimeout)
	}
}

// fakeEndpoints is a node's endpoints: a view that changes when set says.
type fakeEndpoints struct {
	changes atomic.Uint64
	mu      sync.Mutex
	view    []*sluicev1.EndpointStats
	version string
}

func (f *fakeEndpoints) StatusChanges() uint64 { return f.changes.Load() }

func (f *fakeEndpoints) Version() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.version
}

// apply runs a new configuration version, as node.Apply does: the version
// changes, then StatusChanges.
func (f *fakeEndpoints) apply(version string) {
	f.mu.Lock()
	f.version = version
	f.mu.Unlock()
	f.changes.Add(1)
}

func (f *fakeEndpoints) EndpointStats() []*sluicev1.EndpointStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.view
}

// set changes the view; changed says whether StatusChanges moves, as it
// does for health, not for counters.
func (f *fakeEndpoints) set(health sluicev1.EndpointHealth, requests uint64, changed bool) {
	f.mu.Lock()
	f.view = []*sluicev1.EndpointStats{{Cluster: "web", Endpoint: "a", Health: health, Requests: requests}}
	f.mu.Unlock()
	if changed {
		f.changes.Add(1)
	}
}

// nextEndpoints returns the next report carrying endpoints, failing the
// test if one without them comes first (when strict) or none comes.
func (s *sink) nextEndpoints(t *testing.T, strict bool) *sluicev1.EndpointStats {
	t.Helper()
	for {
		rep := s.next(t)
		if rep.GetEndpoints() != nil {
			eps := rep.GetEndpoints().GetEndpoints()
			if len(eps) != 1 {
				t.Fatalf("report has %d endpoints, want 1", len(eps))
			}
			return eps[0]
		}
		if strict {
			t.Fatalf("report without endpoints: %v", rep)
		}
	}
}

// TestEndpointsOnChange: the first report of a stream carries the
// endpoints; after that, a report carries them only once StatusChanges
// moved (a health change, a new version), and then within a batch
// interval.
func TestEndpointsOnChange(t *testing.T) {
	src := &fakeEndpoints{}
	src.set(sluicev1.EndpointHealth_ENDPOINT_HEALTH_CHECKING, 0, true)
	r := NewReporter(16, quiet())
	r.interval = 20 * time.Millisecond
	r.epsEvery = time.Hour
	r.ReportEndpoints(src)
	s, conn := startSink(t)
	run(t, r, conn)
	if ep := s.nextEndpoints(t, true); ep.GetHealth() != sluicev1.EndpointHealth_ENDPOINT_HEALTH_CHECKING {
		t.Fatalf("first report: %v, want a CHECKING", ep)
	}

	// Counters alone do not make a report; a record does, without them.
	src.set(sluicev1.EndpointHealth_ENDPOINT_HEALTH_CHECKING, 5, false)
	r.Record(&conntrack.ConnInfo{Listener: "l"})
	if rep := s.next(t); len(rep.GetRecords()) != 1 || rep.GetEndpoints() != nil {
		t.Fatalf("report after a record = %v, want the record and no endpoints", rep)
	}

	src.set(sluicev1.EndpointHealth_ENDPOINT_HEALTH_DOWN, 7, true)
	if ep := s.nextEndpoints(t, true); ep.GetHealth() != sluicev1.EndpointHealth_ENDPOINT_HEALTH_DOWN || ep.GetRequests() != 7 {
		t.Fatalf("report after a health change: %v, want a DOWN with 7 requests", ep)
	}

	// A new version is a change too, and the view names it: a canary's
	// window counts from there.
	src.apply("9")
	if rep := s.next(t); rep.GetEndpoints().GetVersion() != "9" || len(rep.GetEndpoints().GetEndpoints()) != 1 {
		t.Fatalf("report after version 9 was applied: %v, want the endpoints at version 9", rep)
	}
	select {
	case rep := <-s.reports:
		t.Errorf("a report with nothing new: %v", rep)
	case <-time.After(10 * r.interval):
	}
}

// TestEndpointsRefreshed: with nothing changed, the endpoints still go out
// every epsEvery, so the control plane's counters move on; a new stream
// sends them at once.
func TestEndpointsRefreshed(t *testing.T) {
	src := &fakeEndpoints{}
	src.set(sluicev1.EndpointHealth_ENDPOINT_HEALTH_UP, 1, true)
	r := NewReporter(16, quiet())
	r.interval = 10 * time.Millisecond
	r.epsEvery = 100 * time.Millisecond
	r.ReportEndpoints(src)
	s, conn := startSink(t)
	stop := run(t, r, conn)
	if ep := s.nextEndpoints(t, true); ep.GetRequests() != 1 {
		t.Fatalf("first report: %v", ep)
	}
	src.set(sluicev1.EndpointHealth_ENDPOINT_HEALTH_UP, 2, false)
	for {
		// A refresh of the old view may have been under way.
		ep := s.nextEndpoints(t, true)
		if ep.GetRequests() == 2 {
			break
		}
		if ep.GetRequests() != 1 {
			t.Fatalf("refresh: %v, want 2 requests", ep)
		}
	}

	stop()
	r.epsEvery = time.Hour
	src.set(sluicev1.EndpointHealth_ENDPOINT_HEALTH_UP, 3, false)
	run(t, r, conn)
	if ep := s.nextEndpoints(t, true); ep.GetRequests() != 3 {
		t.Fatalf("first report of a new stream: %v, want 3 requests", ep)
	}
}

// TestRefreshDue: with the default ticks, the view of the endpoints is
// refreshed on the fourth tick after the one that sent it (1 s apart), not
// the fifth (1.25 s), though it went out a little after its tick.
func TestRefreshDue(t *testing.T) {
	for _, tc := range []struct {
		since time.Duration
		want  bool
	}{
		{EndpointsEvery - 3*time.Millisecond, true}, // the fourth tick, sent 3ms after the first
		{EndpointsEvery, true},
		{EndpointsEvery - DefaultInterval - time.Microsecond, false}, // the third tick
		{EndpointsEvery - DefaultInterval/2 - time.Microsecond, false},
	} {
		if got := refreshDue(tc.since, EndpointsEvery, DefaultInterval); got != tc.want {
			t.Errorf("refreshDue(%v since the last view) = %v, want %v", tc.since, got, tc.want)
		}
	}
}

// refusing is a control plane's StatsService that refuses every stream as
// it opens, before reading anything.
type refusing struct {
	sluicev1.UnimplementedStatsServiceServer
}

func (refusing) Report(grpc.ClientStreamingServer[sluicev1.StatsReport, sluicev1.ReportSummary]) error {
	return status.Error(codes.PermissionDenied, "node id n1 does not match its certificate (n2)")
}

// TestSendErrorReportsWhy: once the control plane refused a stream, Send
// fails with io.EOF; the reporter's stream ends with the control plane's
// status instead, which says why.
func TestSendErrorReportsWhy(t *testing.T) {
	conn := serveStats(t, refusing{})
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	st, err := sluicev1.NewStatsServiceClient(conn).Report(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for err == nil && ctx.Err() == nil { // until the refusal arrived
		err = st.Send(&sluicev1.StatsReport{NodeId: "n1"})
		time.Sleep(time.Millisecond)
	}
	if err != io.EOF {
		t.Fatalf("Send after the refusal: %v, want io.EOF", err)
	}
	if got := sendError(st, err); status.Code(got) != codes.PermissionDenied {
		t.Errorf("sendError = %v, want the control plane's PermissionDenied", got)
	}
}

// TestFlushSendsAtOnce: Flush sends the records queued, however few and
// whatever the interval, and returns once the control plane has them;
// with no stream open it fails at once rather than wait for one.
func TestFlushSendsAtOnce(t *testing.T) {
	r := NewReporter(16, quiet())
	r.interval = time.Hour // no batch goes out on its own
	s, conn := startSink(t)
	stop := run(t, r, conn)
	s.next(t) // the stream's first report
	r.Record(&conntrack.ConnInfo{Listener: "l1"})
	r.Record(&conntrack.ConnInfo{Listener: "l2"})
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	if err := r.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	select {
	case rep := <-s.reports:
		if len(rep.GetRecords()) != 2 || rep.GetRecords()[1].GetListener() != "l2" {
			t.Errorf("report sent by Flush = %v, want records l1 and l2", rep)
		}
		if rep.GetEndpoints() != nil {
			t.Errorf("report sent by Flush carries an endpoints view: %v", rep.GetEndpoints())
		}
	default:
		t.Fatal("Flush returned before the control plane had the records")
	}
	stop()
	if err := r.Flush(ctx); err != errNoStream {
		t.Errorf("Flush without Run: %v, want %v", err, errNoStream)
	}
}

// TestFlushWithoutControlPlane: with no stream open, Flush fails at once.
func TestFlushWithoutControlPlane(t *testing.T) {
	conn := refusedConn(t)
	r := NewReporter(16, quiet())
	run(t, r, conn)
	time.Sleep(50 * time.Millisecond) // let Run start and fail its first stream
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	start := time.Now()
	if err := r.Flush(ctx); err != errNoStream {
		t.Errorf("Flush with no control plane: %v, want %v", err, errNoStream)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Flush with no control plane took %v, want at once", took)
	}
}
