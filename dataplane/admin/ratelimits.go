package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/sluice-lb/sluice/dataplane/node"
	"github.com/sluice-lb/sluice/snapshot"
)

// The clients /rate-limits lists per rule unless ?top= says otherwise,
// and the most it lists.
const (
	defaultTopClients = 10
	maxTopClients     = 1000
)

// The JSON of /rate-limits: what HAProxy users read from "show table" on
// the stats socket, each rule with a rate_limit and its busiest clients.
type rateLimitsJSON struct {
	RateLimits []rateLimitJSON `json:"rate_limits"`
}

type rateLimitJSON struct {
	Listener string `json:"listener"`
	Rule     string `json:"rule"` // "rules[N]" for an unnamed one
	// Requests per Period ("10s", "1m", as the snapshot writes it) is the
	// rule's rate.
	Requests uint64 `json:"requests"`
	Period   string `json:"period"`
	// Clients is how many it tracks; Limited the requests (connections)
	// it held for, as sluice_rule_rate_limited_total counts them.
	Clients int              `json:"clients"`
	Limited uint64           `json:"limited"`
	Top     []clientRateJSON `json:"top"`
}

type clientRateJSON struct {
	// Client is an address, or a prefix ("10.1.2.0/24") where the rule
	// counts one as one client, or the value of the header it counts by.
	Client string `json:"client"`
	// Rate is what the client sent within the sliding period that ends
	// now; Over says its next request (connection) finds it over the
	// rate, and is held by the rule when the rest of its match holds.
	Rate uint64 `json:"rate"`
	Over bool   `json:"over"`
}

// rateLimitsHandler serves /rate-limits[?listener=L][&rule=R][&top=N].
// A listener or rule that names nothing with a rate_limit is a 404, so
// that a typo does not read as "no client is limited".
func rateLimitsHandler(n *node.Node) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		top := defaultTopClients
		if s := q.Get("top"); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < 0 || v > maxTopClients {
				http.Error(w, fmt.Sprintf("top must be a number from 0 to %d, not %q", maxTopClients, s), http.StatusBadRequest)
				return
			}
			top = v
		}
		listener, rule := q.Get("listener"), q.Get("rule")
		out := rateLimitsJSON{RateLimits: []rateLimitJSON{}}
		for _, l := range n.RateLimits(top) {
			if (listener != "" && l.Listener != listener) || (rule != "" && l.Rule != rule) {
				continue
			}
			j := rateLimitJSON{
				Listener: l.Listener, Rule: l.Rule, Requests: l.Requests, Period: snapshot.FormatDuration(l.Period),
				Clients: l.Clients, Limited: l.Limited, Top: []clientRateJSON{},
			}
			for _, c := range l.Top {
				j.Top = append(j.Top, clientRateJSON{Client: c.Client, Rate: c.Rate, Over: c.Rate >= l.Requests})
			}
			out.RateLimits = append(out.RateLimits, j)
		}
		if len(out.RateLimits) == 0 && (listener != "" || rule != "") {
			http.Error(w, fmt.Sprintf("no rule with a rate_limit%s%s", named(" named", rule), named(" on listener", listener)), http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(out)
	})
}

// named is " what q" for a query value q, "" for none.
func named(what, q string) string {
	if q == "" {
		return ""
	}
	return fmt.Sprintf("%s %q", what, q)
}
