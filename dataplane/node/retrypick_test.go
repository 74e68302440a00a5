package node

import (
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
