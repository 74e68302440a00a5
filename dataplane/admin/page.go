package admin

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"github.com/sluice-lb/sluice/dataplane/discovery"
	"github.com/sluice-lb/sluice/dataplane/node"
	"github.com/sluice-lb/sluice/internal/ratemeter"
	"github.com/sluice-lb/sluice/internal/units"
)

// defaultRefresh is how often the status page reloads itself, in seconds,
// unless ?refresh= says otherwise.
const defaultRefresh = 5

// maxRefresh bounds ?refresh=, in seconds.
const maxRefresh = 3600

//go:embed page.html
var pageHTML string

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"bytes":     units.Bytes,
	"perSecond": func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"bytesRate": func(v float64) string { return units.Bytes(uint64(v+0.5)) + "/s" },
}).Parse(pageHTML))

// page is what the status page shows: one moment of the node.
type page struct {
	Node, Version string
	State         string // READY, DRAINING or WAITING (no snapshot yet)
	Generated     string
	Refresh       int           // seconds; 0: no reload
	Window        time.Duration // of the rates; 0: none yet
	StatsDropped  uint64
	CP            *pageCP // nil: not known here
	Listeners     []pageListener
	Conns         node.ConnsStatus // over all listeners
	Clusters      []pageCluster
}

// pageCP is the node's subscription to its control plane, with how long
// it has been in its state and since its refusal.
type pageCP struct {
	discovery.Status
	For, RefusedFor string
}

type pageListener struct {
	node.ListenerStatus
	Left string // the time until its draining connections' grace ends
}

type pageCluster struct {
	Name      string
	Up        int // endpoints UP or CHECKING, of a weight above 0: taking work
	Endpoints []pageEndpoint
}

type pageEndpoint struct {
	node.EndpointStatus
	Since   string // how long it has been in its state; "" unknown
	Rate    ratemeter.Rate
	HasRate bool
}

// statusPage serves the node's HTML status page, in the spirit of
// HAProxy's "stats uri": what the node listens on and how each endpoint
// fares now. It reads only what /status and /metrics read.
func statusPage(nodeID string, n *node.Node, dropped func() uint64, cp func() discovery.Status, r *rates) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		refresh := defaultRefresh
		if v := req.URL.Query().Get("refresh"); v != "" {
			s, err := strconv.Atoi(v)
			if err != nil || s < 0 || s > maxRefresh {
				http.Error(w, fmt.Sprintf("refresh must be a number of seconds from 0 (never) to %d, not %q", maxRefresh, v), http.StatusBadRequest)
				return
			}
			refresh = s
		}
		eps := n.Endpoints()
		shown, window := r.observe(eps)
		now := r.now()
		p := page{
			Node: nodeID, Version: n.Version(), State: nodeState(n),
			Generated: now.Format("2006-01-02 15:04:05 MST"),
			Refresh:   refresh, Window: window.Round(100 * time.Millisecond),
			StatsDropped: dropped(), Conns: n.Connections(),
		}
		if cp != nil {
			s := cp()
			p.CP = &pageCP{Status: s, For: units.Age(s.Since, now)}
			if s.Refused != "" {
				p.CP.RefusedFor = units.Age(s.RefusedAt, now)
			}
		}
		for _, l := range n.Listeners() {
			pl := pageListener{ListenerStatus: l}
			if !l.GraceEnds.IsZero() {
				// How long from now, not since; to the nearest second, so
				// that it reads 0s only in its last half second.
				pl.Left = units.Age(now, l.GraceEnds.Add(time.Second/2))
			}
			p.Listeners = append(p.Listeners, pl)
		}
		for _, s := range eps {
			if len(p.Clusters) == 0 || p.Clusters[len(p.Clusters)-1].Name != s.Cluster {
				p.Clusters = append(p.Clusters, pageCluster{Name: s.Cluster})
			}
			c := &p.Clusters[len(p.Clusters)-1]
			if (s.Health == "UP" || s.Health == "CHECKING") && s.Weight > 0 {
				c.Up++ // weight 0: up, but given no new work
			}
			e := pageEndpoint{EndpointStatus: s}
			if !s.Since.IsZero() {
				e.Since = units.Age(s.Since, now)
			}
			e.Rate, e.HasRate = shown[endpointKey(&s)]
			c.Endpoints = append(c.Endpoints, e)
		}
		var buf bytes.Buffer
		if err := pageTemplate.Execute(&buf, p); err != nil {
			http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(buf.Bytes())
	})
}
