package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestHashRemoveEndpointMoves: what a user sees when one of five endpoints
// of a HASH cluster (keyed on ?user=) is taken out. With a consistent method
// (MAGLEV, RING) only the users that were on that endpoint, about a fifth,
// move; everyone else keeps their endpoint and its cache or session. With
// MAP_BASED (hash mod n) most users, about four in five, land elsewhere.
func TestHashRemoveEndpointMoves(t *testing.T) {
	const n, keys = 5, 1000
	tests := []struct {
		method string
		// slack is how many keys not on the removed endpoint may move (a
		// share of keys); -1 for MAP_BASED, which must move more than half.
		slack float64
	}{
		// Maglev lets survivors' slots shift a little when the table is
		// refilled (≈0–1% with a 65537-slot table): allow 2%.
		{"MAGLEV", 0.02},
		// The ring keeps survivors' points, so only the removed endpoint's
		// keys move (0 expected); allow 2% for point reordering.
		{"RING", 0.02},
		{"MAP_BASED", -1},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			c := startCP(t, t.TempDir(), "")
			httpAddr := freeAddr(t)
			var backends []*backend
			for i := range n {
				backends = append(backends, startBackend(t, fmt.Sprintf("b%d", i)))
			}
			removed := backends[2].name
			snap := func(without string) string {
				var eps strings.Builder
				for _, b := range backends {
					if b.name != without {
						fmt.Fprintf(&eps, "      - { name: %s, address: %s }\n", b.name, b.addr)
					}
				}
				return fmt.Sprintf(`
clusters:
  - name: web
    lb_policy: HASH
    hash: { key: URL_PARAM, name: user, method: %s }
    endpoints:
%slisteners:
  - { name: public, address: %s, protocol: HTTP, default_cluster: web }
`, tt.method, eps.String(), httpAddr)
			}
			v := c.apply(t, snap(""))
			dp := startNode(t, c.addr, "node-1")
			waitVersion(t, dp, v)

			// One keep-alive connection for the whole test, across the change.
			client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}, Timeout: testTimeout}
			defer client.CloseIdleConnections()
			// homes sends every key twice and returns the endpoint of each,
			// failing if a key's two answers differ.
			homes := func() []string {
				t.Helper()
				home := make([]string, keys)
				for k := range keys {
					for range 2 {
						got, err := get(client, fmt.Sprintf("http://%s/item?user=u%d", httpAddr, k))
						if err != nil {
							t.Fatal(err)
						}
						if home[k] != "" && got != home[k] {
							t.Fatalf("key u%d answered by %s, then by %s", k, home[k], got)
						}
						home[k] = got
					}
				}
				return home
			}

			before := homes()
			waitVersion(t, dp, c.apply(t, snap(removed)))
			after := homes()

			var onRemoved, survivorsMoved int
			for k := range keys {
				switch {
				case after[k] == removed:
					t.Fatalf("key u%d still answered by removed endpoint %s", k, removed)
				case !slices.ContainsFunc(backends, func(b *backend) bool { return b.name == after[k] }):
					t.Fatalf("key u%d answered by unknown %q", k, after[k])
				case before[k] == removed:
					onRemoved++
				case before[k] != after[k]:
					survivorsMoved++
				}
			}
			moved := onRemoved + survivorsMoved
			t.Logf("%s: %d/%d keys moved (%.1f%%): %d were on %s, %d others (%.1f%%)", tt.method,
				moved, keys, 100*float64(moved)/keys, onRemoved, removed, survivorsMoved, 100*float64(survivorsMoved)/keys)
			if onRemoved == 0 {
				t.Fatalf("no key was on %s; the test needs some", removed)
			}
			if tt.slack < 0 {
				if moved <= keys/2 {
					t.Errorf("%s moved %d/%d keys; want more than half (about %d%%)", tt.method, moved, keys, 100*(n-1)/n)
				}
				return
			}
			if limit := int(tt.slack * keys); survivorsMoved > limit {
				t.Errorf("%s moved %d keys not on %s; want at most %d (%.0f%% of %d)", tt.method, survivorsMoved, removed, limit, 100*tt.slack, keys)
			}
			// 1/n of the keys, plus 5% for how unevenly the keys spread (the
			// removed endpoint's share of 1000 keys varies by about ±1.3%).
			if limit := keys/n + keys*5/100; moved > limit {
				t.Errorf("%s moved %d/%d keys; want at most %d (1/%d + 5%%)", tt.method, moved, keys, limit, n)
			}
		})
	}
}
