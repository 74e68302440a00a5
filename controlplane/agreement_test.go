package controlplane

import (
	"slices"
	"testing"

	"github.com/sluice-lb/sluice/controlplane/fleetview"
)

// TestToldOnceAndMended: a disagreement is logged once while it lasts,
// and its mending once; one that comes back is logged again.
func TestToldOnceAndMended(t *testing.T) {
	key := fleetview.Disagreement{Replica: "b", Setting: "token key", Theirs: "off", Ours: "1f2e"}
	tls := fleetview.Disagreement{Replica: "b", Setting: "TLS", Theirs: "off", Ours: "on"}
	var told told
	for i, tc := range []struct {
		found, news, mended []fleetview.Disagreement
	}{
		{found: []fleetview.Disagreement{tls, key}, news: []fleetview.Disagreement{tls, key}},
		{found: []fleetview.Disagreement{tls, key}},
		{found: []fleetview.Disagreement{key}, mended: []fleetview.Disagreement{tls}},
		{mended: []fleetview.Disagreement{key}},
		{found: []fleetview.Disagreement{key}, news: []fleetview.Disagreement{key}},
	} {
		news, mended := told.update(tc.found)
		if !slices.Equal(news, tc.news) || !slices.Equal(mended, tc.mended) {
			t.Errorf("check %d: news %v, mended %v; want %v, %v", i, news, mended, tc.news, tc.mended)
		}
	}
	ca := fleetview.Disagreement{Replica: "b", Setting: "client CA", Theirs: "off", Ours: "9c1d"}
	other := fleetview.Disagreement{Replica: "c", Setting: "client CA", Theirs: "77ab", Ours: "9c1d"}
	if got := implied([]fleetview.Disagreement{tls, ca, other}); !slices.Equal(got, []fleetview.Disagreement{tls, other}) {
		t.Errorf("implied: %v; want b's client CA left out, its TLS saying it", got)
	}
	if got := disagreementText(other, "this one"); got != `replica c has client CA "77ab", this one "9c1d": nodes with certificates from one CA are refused by the other; give every replica the same --ca-cert` {
		t.Errorf("disagreementText: %s", got)
	}
	if got := disagreementText(key, "this one"); got != `replica b has token key "off", this one "1f2e": a token made through one is refused by the other, and one without a token key lets in whoever reaches it; give every replica the same --token-key file` {
		t.Errorf("disagreementText: %s", got)
	}
}
