package node

import (
	"net/http"
	"slices"
	"testing"

	"github.com/sluice-lb/sluice/dataplane/lb"
	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// A retry goes around the endpoints the work failed on, whatever the
// policy: LEAST_CONN and FIRST would otherwise pick a dead endpoint again
// and again (it has the fewest connections; it comes first), until the
// work gave up. Among the others the least loaded for its weight is taken.
// A backup is not used because the primaries failed one request: backups
// serve only when every primary is down.
func TestRetryPicksAroundFailures(t *testing.T) {
	for _, policy := range []string{"ROUND_ROBIN", "LEAST_CONN", "FIRST", "RANDOM", "STATIC_RR"} {
		t.Run(policy, func(t *testing.T) {
			s := parse(t, `
clusters:
  - name: db
    lb_policy: %s
    endpoints:
      - { name: dead, address: 127.0.0.1:1, max_conn: 10 }
      - { name: busy, address: 127.0.0.1:2, max_conn: 10 }
      - { name: idle, address: 127.0.0.1:3, max_conn: 10 }
      - { name: spare, address: 127.0.0.1:4, backup: true }
`, policy)
			c := compileCluster(s.GetClusters()[0], nil)
			c.rebuild(nil)
			dead, busy, idle, spare := c.members[0].Endpoint, c.members[1].Endpoint, c.members[2].Endpoint, c.members[3].Endpoint
			busy.Acquire()
			defer busy.Release()

			f := failed{dead}
			for range 20 {
				ep, err := c.tryPick(lb.Request{}, f)
				if err != nil {
					t.Fatalf("retry after %s failed: %v", dead.Name, err)
				}
				ep.Release()
				if ep == dead {
					t.Fatalf("the retry picked %s again", dead.Name)
				}
			}
			if ep, err := c.tryPick(lb.Request{}, failed{dead, busy}); err != nil || ep != idle {
				t.Errorf("with dead and busy failed: %v %v, want idle", ep, err)
			} else {
				ep.Release()
			}
			if ep, err := c.tryPick(lb.Request{}, failed{dead, busy, idle}); err != lb.ErrNoEndpoint {
				t.Errorf("with every primary failed: %v %v, want ErrNoEndpoint, not the backup %s", ep, err, spare.Name)
			}
		})
	}
}

// failed is the failures of one unit of work, as the proxies keep them.
type failed upstream.Failures

func (f failed) Failed(ep *upstream.Endpoint) bool { return upstream.Failures(f).Has(ep) }

func (f failed) FailedExactly(ep *upstream.Endpoint) bool { return upstream.Failures(f).HasExactly(ep) }

// nameOf is ep's name, for messages; "none" for nil.
func nameOf(ep *upstream.Endpoint) string {
	if ep == nil {
		return "none"
	}
	return ep.Name
}

// TestRetryPicksAroundAServerMadeAnew: work whose endpoint an apply
// retired picks again; an apply that then added the server back made a
// new endpoint for it, which the work picks around while another server
// is there (or applies faster than its connects would retire each one it
// picks), and takes when it is the only one.
func TestRetryPicksAroundAServerMadeAnew(t *testing.T) {
	const tmpl = `
clusters:
  - name: web
    lb_policy: %s
    endpoints: [%s]
`
	for _, policy := range []string{"ROUND_ROBIN", "LEAST_CONN", "FIRST", "HASH"} {
		t.Run(policy, func(t *testing.T) {
			a, b := "{ name: a, address: 127.0.0.1:1 }", "{ name: b, address: 127.0.0.1:2 }"
			// The retired a, and the cluster of the apply that added it
			// back: a new *Endpoint for the same server, beside b.
			retired := compileCluster(parse(t, tmpl, policy, a).GetClusters()[0], nil).members[0].Endpoint
			c := compileCluster(parse(t, tmpl, policy, a+", "+b).GetClusters()[0], nil)
			c.rebuild(nil)
			anew := c.members[0].Endpoint
			if anew == retired || anew.Name != "a" {
				t.Fatalf("the cluster's first member is %s (%p), want a new endpoint a (not %p)", anew.Name, anew, retired)
			}
			for i := range 20 {
				ep, err := c.tryPick(lb.Request{Hash: uint64(i)}, failed{retired})
				if err != nil || ep.Name != "b" {
					t.Fatalf("pick %d after a was retired: %s %v, want b", i, nameOf(ep), err)
				}
				ep.Release()
			}
			alone := compileCluster(parse(t, tmpl, policy, a).GetClusters()[0], nil)
			alone.rebuild(nil)
			if ep, err := alone.tryPick(lb.Request{}, failed{retired}); err != nil || ep != alone.members[0].Endpoint {
				t.Errorf("with a made anew the only endpoint: %s %v, want it", nameOf(ep), err)
			} else {
				ep.Release()
			}
		})
	}
}

// TestRetriesAreEachClusters: a listener whose rules reach clusters of
// different retries retries each request as its own cluster asks, as
// HAProxy's retries are a backend's: web's retries 0 is not raised to
// web3's 2 because a rule can route to web3. HTTP/1.1, HTTP/2 and TCP.
func TestRetriesAreEachClusters(t *testing.T) {
	n := newNode(t)
	good := backend(t, "good")
	dead := freeAddr(t)
	httpAddr, tcpAddr := freeAddr(t), freeAddr(t)
	// STATIC_RR with weights 1:1 starts at the dead endpoint and takes
	// turns, so every other request meets it first.
	err := n.Apply("1", parse(t, `
clusters:
  - name: web
    lb_policy: STATIC_RR
    retries: 0
    endpoints: [{ name: d1, address: "%s" }, { name: b1, address: "%s" }]
  - name: web3
    retries: 2
    endpoints: [{ name: b1, address: "%s" }]
listeners:
  - { name: pub, address: "%s", protocol: HTTP, default_cluster: web, rules: [{ match: { path: { prefix: /3 } }, route: web3 }], http: { h2c: true } }
  - { name: tcp, address: "%s", protocol: TCP, default_cluster: web, rules: [{ match: { source: [192.0.2.0/24] }, route: web3 }] }
`, dead, good, good, httpAddr, tcpAddr))
	if err != nil {
		t.Fatal(err)
	}
	h1 := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for _, tc := range []struct {
		addr   string
		client *http.Client
	}{{httpAddr, h1}, {httpAddr, h2cClient(t, nil)}, {tcpAddr, h1}} {
		addr := tc.addr
		var codes []int
		for range 4 {
			resp, err := tc.client.Get("http://" + addr + "/")
			if err != nil {
				codes = append(codes, 0) // TCP: the session closes unanswered
				continue
			}
			resp.Body.Close()
			codes = append(codes, resp.StatusCode)
		}
		if failed := slices.Index(codes, 200); failed < 0 || slices.Equal(codes, []int{200, 200, 200, 200}) {
			t.Errorf("%s: statuses %v; want every other request to fail at d1, not retried (web has retries: 0)", addr, codes)
		}
	}
}
