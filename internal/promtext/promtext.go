// Package promtext reads what a /metrics endpoint serves, for tests: the
// page parsed by Prometheus' own text parser, and one metric's value.
package promtext

import (
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are the metric families of a page, by name.
type Families map[string]*dto.MetricFamily

// Scrape fetches url and parses it; a page that does not parse fails t.
func Scrape(t testing.TB, url string) Families {
	t.Helper()
	return ScrapeWith(t, http.DefaultClient, url)
}

// ScrapeWith is Scrape through client (an https one, say).
func ScrapeWith(t testing.TB, client *http.Client, url string) Families {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	m, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s does not parse: %v", url, err)
	}
	return m
}

// Value is the value of the metric called name whose label values are
// values, in the order of their label names (as the page sorts them): a
// counter's or gauge's value, a histogram's sample count; -1 when there
// is no such metric.
func (f Families) Value(name string, values ...string) float64 {
next:
	for _, m := range f[name].GetMetric() {
		ls := m.GetLabel()
		if len(ls) != len(values) {
			continue
		}
		for i, l := range ls {
			if l.GetValue() != values[i] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}
