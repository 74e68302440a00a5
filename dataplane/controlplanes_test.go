package dataplane

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

const defaultTestTimeout = 10 * time.Second

// replica is a gRPC server that answers health watches as SERVING, naming
// itself in the service status it serves.
type replica struct {
	addr string
	srv  *grpc.Server
}

func startReplica(t *testing.T, addr string) *replica {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{addr: ln.Addr().String(), srv: grpc.NewServer()}
	h := health.NewServer()
	h.SetServingStatus(r.addr, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(r.srv, h)
	go r.srv.Serve(ln)
	t.Cleanup(r.srv.Stop)
	return r
}

// watch opens a stream through cps and reports which replica answered: the
// one that knows the service named after its address.
func watch(t *testing.T, ctx context.Context, cps *controlPlanes, addrs ...string) (string, healthpb.Health_WatchClient) {
	t.Helper()
	for _, a := range addrs {
		st, err := healthpb.NewHealthClient(cps).Watch(ctx, &healthpb.HealthCheckRequest{Service: a})
		if err != nil {
			continue
		}
		resp, err := st.Recv()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return a, st
		}
	}
	return "", nil
}

func newControlPlanes(addrs ...string) *controlPlanes {
	dial := func(addr string) (*grpc.ClientConn, error) { return dialControlPlane(addr, insecure.NewCredentials()) }
	return &controlPlanes{addrs: addrs, dial: dial, log: slog.New(slog.DiscardHandler)}
}

// TestControlPlanesFailover: streams go to the first replica; when it dies,
// the stream ends and the next opens on the second; when that dies too,
// the node goes round to the first, back again.
func TestControlPlanesFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	a, b := startReplica(t, ""), startReplica(t, "")
	cps := newControlPlanes(a.addr, b.addr)
	defer cps.Close()

	on, st := watch(t, ctx, cps, a.addr, b.addr)
	if on != a.addr {
		t.Fatalf("first stream on %q, want the first replica %s", on, a.addr)
	}
	a.srv.Stop()
	if _, err := st.Recv(); err == nil {
		t.Fatal("stream on a stopped replica still receives")
	}
	if cps.Addr() != b.addr {
		t.Fatalf("after the first replica died the node uses %s, want %s", cps.Addr(), b.addr)
	}
	on, _ = watch(t, ctx, cps, a.addr, b.addr)
	if on != b.addr {
		t.Fatalf("stream after failover on %q, want %s", on, b.addr)
	}

	// A stream the node cancels itself moves nothing.
	sctx, scancel := context.WithCancel(ctx)
	_, st = watch(t, sctx, cps, b.addr)
	scancel()
	st.Recv()
	if cps.Addr() != b.addr {
		t.Fatalf("a cancelled stream moved the node to %s", cps.Addr())
	}

	// The first replica comes back on its address; the second dies. The
	// first attempt finds the second refusing and moves on.
	a2 := startReplica(t, a.addr)
	b.srv.Stop()
	deadline := time.Now().Add(defaultTestTimeout)
	for on = ""; on != a2.addr; on, _ = watch(t, ctx, cps, a2.addr) {
		if time.Now().After(deadline) {
			t.Fatalf("never back on %s; the node uses %s", a2.addr, cps.Addr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestControlPlanesOne: with a single control plane nothing moves, and its
// connection is kept (gRPC reconnects it).
func TestControlPlanesOne(t *testing.T) {
	a := startReplica(t, "")
	cps := newControlPlanes(a.addr)
	defer cps.Close()
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	if on, _ := watch(t, ctx, cps, a.addr); on != a.addr {
		t.Fatalf("stream on %q, want %s", on, a.addr)
	}
	_, c1, _ := cps.current()
	// Refused as who it is: dialled anew, for a handshake with the
	// certificate the files hold now.
	cps.failed(0, status.Error(codes.PermissionDenied, "node n1's certificate was revoked"))
	_, c2, _ := cps.current()
	if c1 == c2 {
		t.Error("a refusal of the node's certificate kept the connection that presented it")
	}
	a.srv.Stop()
	watch(t, ctx, cps, a.addr)
	if _, c3, _ := cps.current(); c2 != c3 {
		t.Error("the only control plane's connection was replaced when it went away")
	}
}

func TestSplitControlPlanes(t *testing.T) {
	got, err := splitControlPlanes(" a:1, b:2 ,,c:3")
	if err != nil || len(got) != 3 || got[0] != "a:1" || got[1] != "b:2" || got[2] != "c:3" {
		t.Errorf("split = %q, %v", got, err)
	}
	if _, err := splitControlPlanes(" , "); err == nil {
		t.Error("an empty list was accepted")
	}
}
