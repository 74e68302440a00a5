// Package httpapi serves the control plane's JSON API under /api/ on the
// --http address, for the dashboard and for scripts: the fleet, the
// clusters with their endpoints as the nodes see them, one hour of
// per-second history, recent connections, the stored versions with the
// nodes that refused them, and the endpoint actions (drain, enable,
// disable, set weight).
//
// It is a thin adapter over sluice.v1.ConfigService, the API sluicectl
// calls over gRPC: every request, read or write, calls the very same
// ConfigService method, through the same unary interceptors the gRPC
// server runs, with the request's Authorization header passed on as gRPC
// metadata. Validation, the history comment of an edit ("drain web/a"),
// and whatever check the interceptors make (bearer tokens and roles, see
// package auth) are therefore the same for both, and not written twice.
// POSTs are guarded against cross-site requests (see guard).
//
// Handlers run on net/http's goroutines; the API holds no state of its own.
package httpapi

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/sluice-lb/sluice/controlplane/history"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// API serves /api/.
type API struct {
	config  sluicev1.ConfigServiceServer
	history *history.Recorder
	chain   grpc.UnaryServerInterceptor // nil: call the method directly
	now     func() time.Time
	// published is the version and configuration this control plane
	// sends its nodes (WithPublished); nil: none.
	published func() (uint64, *sluicev1.FleetConfig)
	// disagree is the replicas' disagreements the fleet shows, as last
	// asked (ListReplicas), at most every replicasRefresh.
	disagree struct {
		sync.Mutex
		at   time.Time
		said []string
	}
}

// replicasRefresh is how often the fleet view asks again where the
// replicas disagree: each ask reads every replica's node records from
// etcd, and replicas compare their settings once a minute themselves.
const replicasRefresh = 15 * time.Second

// New returns the API over config (the control plane's
// *configapi.Server) and history. Every call goes through interceptors,
// in order, as grpc.ChainUnaryInterceptor runs them for gRPC calls: pass
// the same list to both.
func New(config sluicev1.ConfigServiceServer, hist *history.Recorder, interceptors ...grpc.UnaryServerInterceptor) *API {
	return &API{config: config, history: hist, chain: chain(interceptors), now: time.Now}
}

// WithPublished gives the history view the version and configuration the
// control plane sends its nodes (discovery.Server.Config): a series of a
// cluster there needs no GetStats to tell it from a typo. It returns a;
// call it before serving.
func (a *API) WithPublished(published func() (uint64, *sluicev1.FleetConfig)) *API {
	a.published = published
	return a
}

// Handler returns the API's routes, all under /api/.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/fleet", a.fleet)
	mux.HandleFunc("GET /api/clusters", a.clusters)
	mux.HandleFunc("GET /api/history", a.historySeries)
	mux.HandleFunc("GET /api/conns", a.conns)
	mux.HandleFunc("GET /api/versions", a.versions)
	mux.Handle("POST /api/clusters/{cluster}/endpoints/{endpoint}/{action}", guard(http.HandlerFunc(a.endpointAction)))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		// The catch-all takes every method a route lacks: a path that
		// another method serves is 405 with Allow, as net/http would
		// answer without it, not 404.
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			other := r.Clone(r.Context())
			other.Method = m
			if _, pattern := mux.Handler(other); pattern != "/api/" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, r.Method+" "+r.URL.Path+": the API answers "+strings.Join(allow, " and ")+" there", nil)
			return
		}
		writeError(w, http.StatusNotFound, "no such API: "+r.Method+" "+r.URL.Path, nil)
	})
	return mux
}

// chain composes interceptors the way grpc.ChainUnaryInterceptor does:
// the first is outermost.
func chain(list []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	if len(list) == 0 {
		return nil
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		next := h
		for i := len(list) - 1; i >= 0; i-- {
			ic, inner := list[i], next
			next = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, info, inner) }
		}
		return next(ctx, req)
	}
}

// call runs the ConfigService method named method (its full gRPC name)
// for r, as the gRPC server would: through the interceptors, with r's
// Authorization header as incoming metadata.
func call[Req, Resp any](a *API, r *http.Request, method string, req Req, fn func(context.Context, Req) (Resp, error)) (Resp, error) {
	ctx := r.Context()
	md := metadata.MD{}
	if auth := r.Header.Get("Authorization"); auth != "" {
		md.Set("authorization", auth)
	}
	ctx = metadata.NewIncomingContext(ctx, md)
	ctx = peer.NewContext(ctx, httpPeer(r))
	if a.chain == nil {
		return fn(ctx, req)
	}
	out, err := a.chain(ctx, req, &grpc.UnaryServerInfo{Server: a.config, FullMethod: method},
		func(ctx context.Context, req any) (any, error) { return fn(ctx, req.(Req)) })
	if err != nil {
		var zero Resp
		return zero, err
	}
	return out.(Resp), nil
}

// httpPeer is r's client as a gRPC peer, so the interceptors (the audit
// log) see who called from the dashboard as they do for gRPC.
func httpPeer(r *http.Request) *peer.Peer {
	addr, err := net.ResolveTCPAddr("tcp", r.RemoteAddr)
	if err != nil {
		return &peer.Peer{}
	}
	return &peer.Peer{Addr: addr}
}

// errorBody is what every failed request answers.
type errorBody struct {
	Error string `json:"error"`
	// Fields names each faulty field, when the API said which.
	Fields []fieldError `json:"fields,omitempty"`
}

type fieldError struct {
	Field       string `json:"field"`
	Description string `json:"description"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	// Served as application/json, never inside HTML: "->" of a change
	// reads as it does in sluicectl, not as "-\u003e".
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string, fields []fieldError) {
	writeJSON(w, code, errorBody{Error: msg, Fields: fields})
}

// writeStatus answers a failed ConfigService call with the HTTP status
// that says the same as its gRPC code, its message and its field
// violations.
func writeStatus(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	var fields []fieldError
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, fieldError{Field: v.GetField(), Description: v.GetDescription()})
			}
		}
	}
	writeError(w, httpCode(st.Code()), st.Message(), fields)
}

func httpCode(c codes.Code) int {
	switch c {
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound:
		return http.StatusNotFound
	case codes.FailedPrecondition, codes.Aborted, codes.AlreadyExists:
		return http.StatusConflict
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Canceled:
		return 499 // the client went away; nobody reads this
	}
	return http.StatusInternalServerError
}

// guard refuses POSTs a browser sends on behalf of another site (CSRF):
// those http.CrossOriginProtection spots by Sec-Fetch-Site or an Origin
// that is not the Host, and any without a JSON body type, which a
// cross-site form cannot send and a cross-site fetch cannot send without a
// CORS preflight that this API never answers. curl and scripts, which send
// neither header, pass.
func guard(h http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin request refused: POST from the dashboard's own page, or without Origin and Sec-Fetch-Site (curl)", nil)
	}))
	return cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ct := r.Header.Get("Content-Type"); !isJSON(ct) {
			writeError(w, http.StatusUnsupportedMediaType, "a POST must send Content-Type: application/json", nil)
			return
		}
		h.ServeHTTP(w, r)
	}))
}

func isJSON(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}
