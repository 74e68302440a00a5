package h2proxy

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// TestReceiveBufferChangeStartsNewPool: once an endpoint's receive buffer
// changes, its requests go to a new pool (dialed with the new buffer), and
// the janitor takes the old pool for stale, so it closes that pool's
// connections as they fall idle.
func TestReceiveBufferChangeStartsNewPool(t *testing.T) {
	u := NewUpstream(nil)
	defer u.Close()
	ep := upstream.New("c", "e", "127.0.0.1:9")
	var none netip.AddrPort
	before := u.pool(ep, none, none)
	if again := u.pool(ep, none, none); again != before {
		t.Fatal("two requests with nothing changed got different pools")
	}
	var oldKey poolKey
	u.mu.Lock()
	for k, p := range u.pools {
		if p == before {
			oldKey = k
		}
	}
	u.mu.Unlock()
	if u.stale(oldKey) {
		t.Error("the pool in use is stale")
	}

	ep.SetReceiveBuffer(64 << 10)
	after := u.pool(ep, none, none)
	if after == before {
		t.Error("after the receive buffer changed, requests still go to the pool of the old one")
	}
	if !u.stale(oldKey) {
		t.Error("after the receive buffer changed, the old pool is not stale: its idle connections would live on")
	}
}

// TestPoolKeepsBursts: a burst of requests past maxIdlePerEndpoint at once
// leaves its connections pooled, and the next burst goes out on them
// without a dial: the endpoint sees no new connection. Once they sat
// unused past upstream.IdleTrim, the janitor closes those past
// maxIdlePerEndpoint.
func TestPoolKeepsBursts(t *testing.T) {
	const n = maxIdlePerEndpoint + 44
	var mu sync.Mutex
	seen := map[string]bool{}
	arrived := make(chan struct{}, n)
	release := make(chan struct{})
	ep := backendOf(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.RemoteAddr] = true
		wait := release
		mu.Unlock()
		arrived <- struct{}{}
		<-wait
		w.Write([]byte("ok"))
	}, false)
	u := NewUpstream(nil)
	defer u.Close()
	var none netip.AddrPort
	p := u.pool(ep, none, none)
	conns := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
	burst := func() {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				req, _ := http.NewRequest("GET", "http://"+ep.Addr+"/", nil)
				resp, _, err := u.roundTrip(req, context.Background(), ep, none, none, 5*time.Second, true)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			})
		}
		for range n {
			select {
			case <-arrived:
			case err := <-errs:
				t.Fatal(err)
			case <-time.After(10 * time.Second):
				t.Fatal("the burst did not reach the endpoint")
			}
		}
		mu.Lock()
		close(release)
		release = make(chan struct{}) // for the next burst
		mu.Unlock()
		wg.Wait()
		// An HTTP/1.1 connection has room again once net/http read the
		// end of its response, after the body's Close.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			p.mu.Lock()
			free := len(p.free)
			p.mu.Unlock()
			if free == n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d connections free after the burst, want %d", free, n)
			}
		}
	}
	burst()
	if got := conns(); got != n {
		t.Fatalf("the first burst came on %d connections, want %d", got, n)
	}
	burst()
	if got := conns(); got != n {
		t.Errorf("the second burst opened %d more connections, want none", got-n)
	}

	p.mu.Lock()
	for _, pc := range p.conns {
		pc.idle = time.Now().Add(-upstream.IdleTrim - time.Second)
	}
	p.mu.Unlock()
	left, closing := p.closeIdle(false)
	closeAll(closing)
	if left != maxIdlePerEndpoint {
		t.Errorf("%d connections left after the janitor, want %d", left, maxIdlePerEndpoint)
	}
}
