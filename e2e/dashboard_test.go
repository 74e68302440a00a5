package e2e

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"google.golang.org/protobuf/proto"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

var screenshot = flag.String("screenshot", "", "TestDashboard: after the test, run traffic for a while and write a PNG of the dashboard to this `FILE` (make screenshot)")

// browserTimeout bounds everything TestDashboard does in the browser.
const browserTimeout = 90 * time.Second

// chromiumPath finds Debian's chromium. Without it the test is skipped,
// unless it runs in CI (CI set), where .ci/run installs it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not on PATH and CI is set: .ci/run installs it (apt-get install chromium)")
	}
	t.Skip("chromium is not installed (apt-get install chromium)")
	return ""
}

// browser starts a headless chromium and returns its context and the
// errors the pages it shows log or throw, as they come.
func browser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // tests run as root in CI containers
		chromedp.WindowSize(1440, 1000),
	)
	ctx, cancelTimeout := context.WithTimeout(context.Background(), browserTimeout)
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	ctx, cancelBrowser := chromedp.NewContext(ctx)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc(); cancelTimeout() })

	var (
		mu     sync.Mutex
		errors []string
	)
	listen := func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				msg = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			msg = "exception: " + ev.ExceptionDetails.Text
			if ex := ev.ExceptionDetails.Exception; ex != nil {
				msg += " " + ex.Description
			}
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError || ev.Entry.Level == cdplog.EntryLevelWarning {
				msg = fmt.Sprintf("log %s: %s %s", ev.Entry.Level, ev.Entry.Text, ev.Entry.URL)
			}
		}
		if msg != "" {
			mu.Lock()
			errors = append(errors, msg)
			mu.Unlock()
		}
	}
	if err := chromedp.Listen(ctx, listen); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	for _, enable := range []cdp.Command[cdp.Empty, cdp.Empty]{runtime.Enable, cdplog.Enable} {
		if _, err := chromedp.Call(ctx, enable, cdp.Empty{}); err != nil {
			t.Fatalf("chromium: %v", err)
		}
	}
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(errors)
	}
}

// apiGet decodes the control plane's JSON API answer at path into v.
func (c *cp) apiGet(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := (&http.Client{Timeout: testTimeout}).Get("http://" + c.http + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", path, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// TestDashboard loads the dashboard of a real control plane with a real
// node and backends in headless chromium: the page shows the node and the
// cluster with the traffic the node counted, logs no error, and a drain
// clicked on the page drains the endpoint: stored in the snapshot with the
// history comment sluicectl would give, applied by the node, and shown on
// the page. A connection whose requests the node answered with errors
// shows them in the connections table.
func TestDashboard(t *testing.T) {
	ctx, pageErrors := browser(t)
	c := startCP(t, t.TempDir(), "")
	a, b := startBackend(t, "a"), startBackend(t, "b")
	listen := freeAddr(t)
	dp := startNode(t, c.addr, "node-1")
	waitVersion(t, dp, c.apply(t, fmt.Sprintf(`
clusters:
  - name: web
    health_check: { interval: 100ms, fall: 2, rise: 1 }
    endpoints:
      - { name: a, address: %s }
      - { name: b, address: %s }
  - { name: web-gone, endpoints: [ { name: gone, address: %s } ] }
listeners:
  - name: web
    address: %s
    protocol: HTTP
    default_cluster: web
    rules:
      - { name: no-admin, match: { path: { prefix: [/admin] } }, deny: {} }
      - { name: gone, match: { path: { prefix: [/gone] } }, route: web-gone }
`, a.addr, b.addr, freeAddr(t), listen)))
	waitFor(t, "both endpoints UP in the control plane's stats", func() bool {
		_, ea := c.endpointStats(t, "node-1", "web", "a")
		_, eb := c.endpointStats(t, "node-1", "web", "b")
		return ea.GetHealth() == sluicev1.EndpointHealth_ENDPOINT_HEALTH_UP && eb.GetHealth() == sluicev1.EndpointHealth_ENDPOINT_HEALTH_UP
	})
	const sent = 20
	if got := count(t, "http://"+listen+"/", sent, nil); got["a"] != sent/2 || got["b"] != sent/2 {
		t.Fatalf("answers %v, want a:%d b:%d", got, sent/2, sent/2)
	}
	// The node reports its counters every second; the history counts
	// exactly what was sent, spread over the seconds it was reported in.
	var hist struct{ Requests []float64 }
	waitFor(t, "the cluster's history to count the requests", func() bool {
		c.apiGet(t, "/api/history?cluster=web&seconds=300", &hist)
		total := 0.0
		for _, v := range hist.Requests {
			total += v
		}
		return math.Abs(total-sent) < 0.01
	})

	// One connection, two requests the node answers itself: a rule's 403
	// and a 502 (web-gone's endpoint refuses connections).
	getOnOneConn(t, listen, "/admin", "/gone")

	url := "http://" + c.http + "/"
	aRow := `tr[data-endpoint="web/a"]`
	if err := chromedp.Do(ctx,
		chromedp.Navigate(url),
		chromedp.WaitVisible(`[data-node="node-1"]`),
		chromedp.WaitVisible(`[data-cluster="web"] `+aRow+`[data-state="ACTIVE"]`),
		chromedp.WaitVisible(aRow+` [data-health="UP"]`),
	); err != nil {
		t.Fatalf("dashboard: %v (page errors: %q)", err, pageErrors())
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	nodeText, state, requests := text(`[data-node="node-1"]`), text(aRow+` .state`), text(aRow+` td.requests`)
	v1 := dp.Node.Version()
	if !strings.Contains(nodeText, "test="+t.Name()) || !strings.Contains(nodeText, "v"+v1) || !strings.Contains(nodeText, "IN SYNC") {
		t.Errorf("node card says %q; want its label test=%s, applied v%s, IN SYNC", nodeText, t.Name(), v1)
	}
	if state != "ACTIVE" || requests != fmt.Sprint(sent/2) {
		t.Errorf("web/a shows state %q and %q requests, want ACTIVE and %d", state, requests, sent/2)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(`#conns .badge.failed`)); err != nil {
		t.Fatalf("connections table: %v (page errors: %q)", err, pageErrors())
	}
	if got := text(`#conns .badge.failed`); got != "2 failed: no endpoint, denied" {
		t.Errorf("the connections table says %q of the failed requests, want \"2 failed: no endpoint, denied\"", got)
	}
	// The latest request a rule decided, /gone, went by the rule gone.
	if got := text(`#conns .rule`); got != "by gone" {
		t.Errorf("the connections table names the rule %q, want \"by gone\"", got)
	}

	if err := chromedp.Do(ctx,
		chromedp.Click(aRow+` button[data-action="drain"]`),
		chromedp.WaitVisible(aRow+`[data-state="DRAINING"]`),
		chromedp.WaitVisible(aRow+` [data-health="DRAINING"]`),
		chromedp.WaitVisible(`tr[data-endpoint="web/b"][data-state="ACTIVE"]`),
	); err != nil {
		t.Fatalf("drain from the page: %v (page errors: %q)", err, pageErrors())
	}
	// What the page shows is what the API (sluicectl) says.
	_, ea := c.endpointStats(t, "node-1", "web", "a")
	if ea.GetHealth() != sluicev1.EndpointHealth_ENDPOINT_HEALTH_DRAINING {
		t.Errorf("sluicectl stats shows web/a %v after the drain, want DRAINING", ea.GetHealth())
	}
	hctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	h, err := c.api.History(hctx, &sluicev1.HistoryRequest{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	last := h.GetVersions()[0]
	if last.GetComment() != "drain web/a" || !strings.HasPrefix(last.GetAuthor(), "dashboard@") {
		t.Errorf("history: version %d by %q, %q; want by dashboard@…, \"drain web/a\"", last.GetVersion(), last.GetAuthor(), last.GetComment())
	}
	if errs := pageErrors(); len(errs) > 0 {
		t.Errorf("the page logged errors: %q", errs)
	}

	// The weight field: an empty field or a weight that is no integer is
	// refused with the reason and stores nothing; a weight typed is set.
	for _, tt := range []struct{ typed, toast string }{
		{"", "set-weight web/b failed: type a weight, an integer from 0 to 256"},
		{"2.5", "set-weight web/b 2.5 failed: weight must be an integer from 0 to 256, not 2.5"},
		{"3", fmt.Sprintf("set-weight web/b 3: version %d", last.GetVersion()+1)},
	} {
		if got := setWeight(t, ctx, "web/b", tt.typed); got != tt.toast {
			t.Errorf("weight %q typed for web/b: the page says %q, want %q", tt.typed, got, tt.toast)
		}
	}
	cur, err := c.api.Get(hctx, &sluicev1.GetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range cur.GetSnapshot().GetClusters()[0].GetEndpoints() {
		if ep.GetName() == "b" && ep.GetWeight() != 3 {
			t.Errorf("web/b has weight %d in version %d, want 3", ep.GetWeight(), cur.GetInfo().GetVersion())
		}
	}
	// The one error the page may log now is chromium's for the refused
	// weight: the empty field never reached the API.
	if errs := pageErrors(); len(errs) != 1 || !strings.Contains(errs[0], "status of 400") || !strings.HasSuffix(errs[0], "/api/clusters/web/endpoints/b/weight?group=default") {
		t.Errorf("the page logged %q, want only the 400 of the refused weight", errs)
	}

	// A second node group, with a cluster of the same name: the page
	// offers the groups, shows the one chosen with its own node's
	// report, and drains in that group.
	edge, err := snapshot.Parse([]byte(fmt.Sprintf("clusters: [{name: web, endpoints: [{name: e1, address: %s}]}]", b.addr)), "edge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.api.Apply(hctx, &sluicev1.ApplyRequest{Snapshot: edge, Group: "edge", Selector: proto.String("role=edge"), Author: "e2e"}); err != nil {
		t.Fatal(err)
	}
	startLabelledNode(t, c.addr, "edge-1", map[string]string{"role": "edge"})
	e1Row := `[data-cluster="web"] tr[data-endpoint="web/e1"]`
	if err := chromedp.Do(ctx, chromedp.WaitVisible(`#group-label`)); err != nil {
		t.Fatalf("the page offers no group choice: %v (page errors: %q)", err, pageErrors())
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const s = document.getElementById("group"); s.value = "edge"; s.dispatchEvent(new Event("change")); return true; })()`)); err != nil {
		t.Fatalf("choose group edge: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(e1Row+` [data-health="UP"]`)); err != nil {
		t.Fatalf("group edge on the page: %v (page errors: %q)", err, pageErrors())
	}
	if body, err := chromedp.Run(ctx, chromedp.Text(`[data-cluster="web"] tbody`)); err != nil || !strings.Contains(body, b.addr) || strings.Contains(body, a.addr) {
		t.Errorf("group edge's web shows %q (%v); want its endpoint e1 (%s) only, not default's a (%s)", body, err, b.addr, a.addr)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(e1Row+` button[data-action="drain"]`),
		chromedp.WaitVisible(e1Row+`[data-state="DRAINING"]`),
	); err != nil {
		t.Fatalf("drain in group edge from the page: %v (page errors: %q)", err, pageErrors())
	}
	gr, err := c.api.Get(hctx, &sluicev1.GetRequest{Group: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	if st := gr.GetSnapshot().GetClusters()[0].GetEndpoints()[0].GetState(); st != sluicev1.AdminState_ADMIN_STATE_DRAINING {
		t.Errorf("group edge's web/e1 is %v after the drain from the page, want DRAINING", st)
	}

	// The picture shows the fleet in sync: before the refusal below.
	if *screenshot != "" {
		takeScreenshot(t, ctx, c, listen)
	}

	// The versions: the drain from the page heads its row with who and
	// why; a version node-1 refuses (its listener's address is taken)
	// names node-1, with the reason on hover.
	busy, err := net.Listen("tcp", freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	taken := proto.Clone(cur.GetSnapshot()).(*sluicev1.Snapshot)
	taken.GetListeners()[0].Address = busy.Addr().String()
	actx, cancel := context.WithTimeout(context.Background(), testTimeout) // the picture may have taken hctx's time
	defer cancel()
	refused, err := c.api.Apply(actx, &sluicev1.ApplyRequest{Snapshot: taken, Author: "e2e", Comment: "move web"})
	if err != nil {
		t.Fatal(err)
	}
	drainRow := fmt.Sprintf(`#versions tr[data-version="%d"]`, last.GetVersion())
	refusedRow := fmt.Sprintf(`#versions tr[data-version="%d"]`, refused.GetVersion())
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(drainRow),
		chromedp.WaitVisible(refusedRow+` .refusal[data-node="node-1"]`),
	); err != nil {
		t.Fatalf("versions on the page: %v (page errors: %q)", err, pageErrors())
	}
	if row := text(drainRow); !strings.Contains(row, "dashboard@") || !strings.Contains(row, "drain web/a") || !strings.Contains(row, "~ cluster web: endpoint a state ACTIVE -> DRAINING") {
		t.Errorf("version %d's row says %q; want by dashboard@…, \"drain web/a\" and its change", last.GetVersion(), row)
	}
	if row := text(refusedRow); !strings.Contains(row, "current") || !strings.Contains(row, "move web") {
		t.Errorf("version %d's row says %q; want it marked current, with its comment", refused.GetVersion(), row)
	}
	why, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('`+refusedRow+` .refusal').title`))
	if err != nil || !strings.Contains(why, "node-1 refused it") || !strings.Contains(why, busy.Addr().String()+": bind: address already in use") {
		t.Errorf("the refusal's hover text is %q (%v); want node-1's bind error on %s", why, err, busy.Addr())
	}

	// A version of many changes shows the first three and counts the
	// rest, which the page no longer fetches.
	more := proto.Clone(taken).(*sluicev1.Snapshot)
	for _, name := range []string{"c1", "c2", "c3", "c4", "c5"} {
		more.Clusters = append(more.Clusters, &sluicev1.Cluster{Name: name})
	}
	big, err := c.api.Apply(actx, &sluicev1.ApplyRequest{Snapshot: more, Author: "e2e", Comment: "five more"})
	if err != nil {
		t.Fatal(err)
	}
	bigRow := fmt.Sprintf(`#versions tr[data-version="%d"]`, big.GetVersion())
	if err := chromedp.Do(ctx, chromedp.WaitVisible(bigRow)); err != nil {
		t.Fatalf("version %d on the page: %v (page errors: %q)", big.GetVersion(), err, pageErrors())
	}
	if row := text(bigRow); !strings.Contains(row, "+ cluster c1") || !strings.Contains(row, "+ cluster c3") || strings.Contains(row, "c4") || !strings.Contains(row, "+2 more") {
		t.Errorf("version %d's row says %q; want + cluster c1 to c3, then +2 more", big.GetVersion(), row)
	}
}

// setWeight types value into the weight field of endpoint key (web/b)
// and clicks its Set button, in one go (a refresh in between would draw
// the row anew), then returns the text of the toast that answers. The
// toasts shown before go first.
func setWeight(t *testing.T, ctx context.Context, key, value string) string {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`(() => {
		document.querySelectorAll("#toasts .toast").forEach(el => el.remove());
		const row = document.querySelector(%q);
		row.querySelector("input.weight").value = %q;
		row.querySelector('button[data-action="weight"]').click();
		return true;
	})()`, `tr[data-endpoint="`+key+`"]`, value))); err != nil {
		t.Fatalf("set weight %q for %s: %v", value, key, err)
	}
	var text string
	waitFor(t, "the page's answer to weight "+value, func() bool {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#toasts .toast")?.textContent ?? ""`))
		text = s
		return err == nil && s != ""
	})
	return text
}

// takeScreenshot shows the default group again (the test ends on edge),
// enables web/a again, runs varying traffic for a while so that the
// charts have a shape, and writes a PNG of the whole page.
func takeScreenshot(t *testing.T, ctx context.Context, c *cp, listen string) {
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const s = document.getElementById("group"); s.value = "default"; s.dispatchEvent(new Event("change")); return true; })()`)); err != nil {
		t.Fatalf("choose group default: %v", err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(`tr[data-endpoint="web/a"] button[data-action="enable"]`),
		chromedp.WaitVisible(`tr[data-endpoint="web/a"][data-state="ACTIVE"]`),
	); err != nil {
		t.Fatalf("enable from the page: %v", err)
	}
	client := &http.Client{Timeout: testTimeout}
	defer client.CloseIdleConnections()
	start := time.Now()
	for time.Since(start) < 25*time.Second {
		// 20 to 60 requests a second, in a slow wave.
		rate := 40 + 20*math.Sin(time.Since(start).Seconds()/4)
		get(client, "http://"+listen+"/")
		time.Sleep(time.Duration(float64(time.Second) / rate))
	}
	for range 8 { // a few short connections for the table
		tcpGet(listen)
	}
	if err := chromedp.Do(ctx, chromedp.Sleep(3*time.Second)); err != nil { // two refreshes
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(*screenshot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", *screenshot, len(png))
}
