package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sluice-lb/sluice/dataplane"
	"github.com/sluice-lb/sluice/internal/promtext"
	"github.com/sluice-lb/sluice/internal/testcert"
)

// grpcBackend is a grpc-go server with the standard health service. Every
// unary call answers, in trailer "deadline-ms", how long the deadline it
// received leaves (-1 without one): how a test sees that deadlines cross
// the proxy.
type grpcBackend struct {
	addr   string
	health *health.Server
}

func startGRPCBackend(t *testing.T) *grpcBackend {
	t.Helper()
	return startGRPCBackendWith(t)
}

// startGRPCBackendWith is startGRPCBackend with server options (TLS).
func startGRPCBackendWith(t *testing.T, opts ...grpc.ServerOption) *grpcBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(append(opts, grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		left := int64(-1)
		if dl, ok := ctx.Deadline(); ok {
			left = time.Until(dl).Milliseconds()
		}
		grpc.SetTrailer(ctx, metadata.Pairs("deadline-ms", strconv.FormatInt(left, 10)))
		return h(ctx, req)
	}))...)
	b := &grpcBackend{addr: ln.Addr().String(), health: health.NewServer()}
	b.health.SetServingStatus("sluice.test", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, b.health)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return b
}

// checkGRPC runs the calls a gRPC user makes through the proxy at conn:
// unary calls with their status and trailers, a deadline that reaches the
// backend, and a server stream that follows the backend's changes.
func checkGRPC(t *testing.T, conn *grpc.ClientConn, b *grpcBackend) {
	t.Helper()
	hc := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	var trailer metadata.MD
	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "sluice.test"}, grpc.Trailer(&trailer))
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check(sluice.test): %v, %v; want SERVING", resp.GetStatus(), err)
	}
	// The deadline went through: the backend saw one, at most the
	// client's (testTimeout) and not already over.
	if left, err := strconv.Atoi(firstOf(trailer["deadline-ms"])); err != nil || left <= 0 || left > int(testTimeout/time.Millisecond) {
		t.Errorf("deadline seen by the backend: %q, want 1..%d ms", trailer["deadline-ms"], testTimeout/time.Millisecond)
	}

	// A status from the backend, with its message, in the trailers.
	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.service"})
	if st, _ := status.FromError(err); st.Code() != codes.NotFound || st.Message() != "unknown service" {
		t.Errorf("Check(no.such.service): %v, want NotFound \"unknown service\"", err)
	}

	// A server stream: the first status at once, then each change.
	wctx, wcancel := context.WithTimeout(ctx, testTimeout)
	defer wcancel()
	w, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{Service: "sluice.test"})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	for _, want := range []healthpb.HealthCheckResponse_ServingStatus{
		healthpb.HealthCheckResponse_SERVING,
		healthpb.HealthCheckResponse_NOT_SERVING,
		healthpb.HealthCheckResponse_SERVING,
	} {
		got, err := w.Recv()
		if err != nil || got.GetStatus() != want {
			t.Fatalf("Watch: got %v, %v; want %v", got.GetStatus(), err, want)
		}
		// Flip the status for the next message: the stream must carry it
		// while it stays open.
		next := healthpb.HealthCheckResponse_NOT_SERVING
		if want == healthpb.HealthCheckResponse_NOT_SERVING {
			next = healthpb.HealthCheckResponse_SERVING
		}
		b.health.SetServingStatus("sluice.test", next)
	}
	wcancel()
	b.health.SetServingStatus("sluice.test", healthpb.HealthCheckResponse_SERVING)

	// A deadline shorter than the stream: the client sees its deadline,
	// not a proxy error. The backend got the same deadline (grpc-timeout)
	// and ends the call at about the same moment: its health server
	// answers Canceled "Stream has ended." then. Which of the two the
	// client reports first is a race of timers in this one process (the
	// backend's won in about one run in four on a loaded machine), so
	// either is right; a proxy error (UNAVAILABLE, INTERNAL) is not.
	dctx, dcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer dcancel()
	w, err = hc.Watch(dctx, &healthpb.HealthCheckRequest{Service: "sluice.test"})
	if err == nil {
		for err == nil {
			_, err = w.Recv()
		}
	}
	st, _ := status.FromError(err)
	backendEnded := st.Code() == codes.Canceled && st.Message() == "Stream has ended."
	if st.Code() != codes.DeadlineExceeded && !backendEnded {
		t.Errorf("Watch with a 300ms deadline ended with %v, want DeadlineExceeded (or the backend's own Canceled at its deadline)", err)
	}
}

func firstOf(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// TestGRPCEndToEnd: a grpc-go client reaches a grpc-go server in a
// cluster with http2 through a sluice h2c listener and through a TLS
// listener (ALPN h2): unary and server-streaming calls, statuses and
// their messages in trailers, deadlines.
func TestGRPCEndToEnd(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	b := startGRPCBackend(t)
	dp := startNode(t, c.addr, "node-1")
	plain, secure := freeAddr(t), freeAddr(t)
	cert, key := selfSigned(t, "grpc.example")
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: grpc
    http2: true
    endpoints: [ { name: g1, address: %s } ]
listeners:
  - name: grpc-h2c
    address: %s
    protocol: HTTP
    default_cluster: grpc
    http: { h2c: true }
  - name: grpc-tls
    address: %s
    protocol: HTTP
    default_cluster: grpc
%s`, b.addr, plain, secure, tlsYAML(cert, key))))

	t.Run("h2c", func(t *testing.T) {
		conn, err := grpc.NewClient(plain, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		checkGRPC(t, conn, b)
	})
	t.Run("tls", func(t *testing.T) {
		creds := credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, ServerName: "grpc.example"})
		conn, err := grpc.NewClient(secure, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		checkGRPC(t, conn, b)
	})
}

// TestGRPCProxyErrors: the proxy's own refusals and failures reach a gRPC
// client as gRPC statuses with the proxy's text (a trailers-only
// response), not as HTTP errors the client can only call an unexpected
// status: no endpoint left is UNAVAILABLE, a deny PERMISSION_DENIED with
// the deny's body, and a deny of 503 that a browser would be sent to a
// maintenance page for (an error page's redirect) UNAVAILABLE, as a gRPC
// client does not follow redirects.
func TestGRPCProxyErrors(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	dp := startNode(t, c.addr, "node-1")
	listen := freeAddr(t)
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: grpc
    http2: true
    retries: 0
    endpoints: [ { name: gone, address: %s } ]
listeners:
  - name: grpc-h2c
    address: %s
    protocol: HTTP
    default_cluster: grpc
    http:
      h2c: true
      error_pages: [ { status: 503, redirect: "https://status.example.com/" } ]
    rules:
      - match: { path: { prefix: [/grpc.health.v1.Health/Watch] } }
        deny: { status: 403, body: "watching is not allowed here" }
      - match: { path: { prefix: [/grpc.health.v1.Health/List] } }
        deny: { status: 503 }
`, freeAddr(t), listen)))
	conn, err := grpc.NewClient(listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{})
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable || st.Message() != "could not connect to the endpoint" {
		t.Errorf("Check with the endpoint gone: %v; want Unavailable \"could not connect to the endpoint\"", err)
	}
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	if st, _ := status.FromError(err); st.Code() != codes.PermissionDenied || st.Message() != "watching is not allowed here" {
		t.Errorf("Watch, denied by a rule: %v; want PermissionDenied \"watching is not allowed here\"", err)
	}
	_, err = hc.List(ctx, &healthpb.HealthListRequest{})
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable || st.Message() != "Service Unavailable" {
		t.Errorf("List, denied with 503, whose page redirects: %v; want Unavailable \"Service Unavailable\"", err)
	}
}

// TestGRPCToTLSEndpoints: a cluster with http2 and tls speaks h2 over TLS
// to its endpoints (ALPN h2, the certificate verified with the cluster's
// CA), whatever the client spoke to the listener.
func TestGRPCToTLSEndpoints(t *testing.T) {
	ca := testcert.NewCA(t)
	cert := ca.Server(t, "grpc.internal")
	b := startGRPCBackendWith(t, grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
	c := startCP(t, t.TempDir(), "")
	dp := startNode(t, c.addr, "node-1")
	plain := freeAddr(t)
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: grpc
    http2: true
    tls: { server_name: grpc.internal, ca_pem: %q }
    endpoints: [ { name: g1, address: %s } ]
listeners:
  - { name: grpc-h2c, address: %s, protocol: HTTP, default_cluster: grpc, http: { h2c: true } }
`, ca.PEM, b.addr, plain)))
	conn, err := grpc.NewClient(plain, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	checkGRPC(t, conn, b)
}

// TestGRPCExample runs examples/grpc.yaml as written, on loopback: gRPC
// through both listeners, and plain HTTP through the h2c one, to the web
// cluster, over HTTP/1.1 and HTTP/2.
func TestGRPCExample(t *testing.T) {
	raw, err := os.ReadFile("../examples/grpc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g1, g2, web := startGRPCBackend(t), startGRPCBackend(t), startRuleBackend(t, "web")
	plain, secure := freeAddr(t), freeAddr(t)
	cert, key := selfSigned(t, "grpc.example")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "grpc.crt"), filepath.Join(dir, "grpc.key")
	if err := os.WriteFile(certFile, []byte(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := strings.NewReplacer(
		"127.0.0.1:8080", plain, "127.0.0.1:8443", secure,
		"127.0.0.1:50051", g1.addr, "127.0.0.1:50052", g2.addr, "127.0.0.1:9001", web.addr,
		"/etc/sluice/grpc.crt", certFile, "/etc/sluice/grpc.key", keyFile,
	).Replace(string(raw))
	c := startCP(t, t.TempDir(), "")
	v := c.apply(t, doc)
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, v)

	for _, tc := range []struct {
		addr  string
		creds credentials.TransportCredentials
	}{
		{plain, insecure.NewCredentials()},
		{secure, credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})},
	} {
		conn, err := grpc.NewClient(tc.addr, grpc.WithTransportCredentials(tc.creds))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		// Both endpoints serve: LEAST_CONN spreads sequential calls.
		for range 4 {
			if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Errorf("Check through %s: %v", tc.addr, err)
			}
		}
		cancel()
		conn.Close()
	}
	for _, client := range []*http.Client{{Timeout: testTimeout}, h2Client(true)} {
		if got := h2Get(t, client, "http://"+plain+"/"); got.status != 200 || got.body != "web" {
			t.Errorf("GET / over HTTP/%d: %d %q, want the web cluster", got.proto, got.status, got.body)
		}
	}
}

// TestAccessLogGRPCStatus: the access log line of a gRPC call carries the
// gRPC status it ended with, as Envoy's %GRPC_STATUS%: OK and the
// backend's own codes (in trailers, or trailers-only for a method it does
// not have), and the code of the proxy's own answer (a deny's 403 is
// PERMISSION_DENIED), beside the HTTP status. A request that is not a
// gRPC call has none.
func TestAccessLogGRPCStatus(t *testing.T) {
	c := startCP(t, t.TempDir(), "")
	g := startGRPCBackend(t)
	listen := freeAddr(t)
	var out logBuffer
	dp := startAdminNode(t, c.addr, "node-1", dataplane.Options{AccessLog: &out})
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - { name: grpc, http2: true, endpoints: [{ name: g1, address: %s }] }
listeners:
  - name: public
    address: %s
    protocol: HTTP
    default_cluster: grpc
    rules: [{ match: { path: { prefix: /grpc.health.v1.Health/Watch } }, deny: {} }]
`, g.addr, listen)))
	conn, err := grpc.NewClient(listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	hc := healthpb.NewHealthClient(conn)
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "sluice.test"}); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.service"}); status.Code(err) != codes.NotFound {
		t.Errorf("Check(no.such.service): %v, want NotFound", err)
	}
	if err := conn.Invoke(ctx, "/no.such.Service/Call", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("an unknown method: %v, want Unimplemented", err)
	}
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: "sluice.test"})
	if err == nil {
		_, err = w.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("Watch, denied: %v, want PermissionDenied", err)
	}
	client := &http.Client{Timeout: testTimeout}
	if resp, err := client.Get("http://" + listen + "/plain"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	conn.Close()
	client.CloseIdleConnections()
	waitFor(t, "the connections to end on the node", func() bool {
		return promtext.Scrape(t, "http://"+dp.AdminAddr().String()+"/metrics").Value("sluice_listener_connections", "public") <= 0
	})
	dp.Close()

	var got []string // path, status and grpc_status of each line
	for _, l := range out.lines(t) {
		grpcStatus := "-"
		if v, ok := l["grpc_status"]; ok {
			grpcStatus = fmt.Sprint(v)
		}
		got = append(got, fmt.Sprintf("%v %v %s", l["path"], l["status"], grpcStatus))
	}
	want := []string{
		"/grpc.health.v1.Health/Check 200 0", // OK
		"/grpc.health.v1.Health/Check 200 5", // NOT_FOUND, in the trailers
		"/no.such.Service/Call 200 12",       // UNIMPLEMENTED, trailers-only
		"/grpc.health.v1.Health/Watch 403 7", // the deny's PERMISSION_DENIED
		"/plain 415 -",
	}
	if !slices.Equal(got, want) {
		t.Errorf("path, status and grpc_status of each line:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
