package lb

import (
	"fmt"
	"testing"
)

// benchSet returns n endpoints with weights 1..4 and 0..3 requests in
// flight, so pickers comparing loads cannot stop at the first idle one.
func benchSet(n int) Set {
	var spec []string
	for i := range n {
		spec = append(spec, fmt.Sprintf("e%d:%d", i, 1+i%4))
	}
	s := testSet(spec...)
	for i, m := range s {
		for range i % 4 {
			m.Endpoint.Acquire()
		}
	}
	return s
}

// benchKeys are the request hashes cycled through by hash benchmarks, many
// enough that lookups into large tables miss the cache as in production.
var benchKeys = func() []Request {
	r := make([]Request, 1<<12)
	for i := range r {
		r[i] = Request{Hash: HashString(fmt.Sprintf("/item/%d", i)), HasHash: true}
	}
	return r
}()

func BenchmarkPick(b *testing.B) {
	for _, pol := range policies() {
		for _, n := range []int{2, 100, 10000} {
			b.Run(fmt.Sprintf("%s/%d", pol.name, n), func(b *testing.B) {
				p := pol.build(benchSet(n))
				b.ReportAllocs()
				k := 0
				for b.Loop() {
					var r Request
					if pol.hashed {
						r = benchKeys[k&(len(benchKeys)-1)]
						k++
					}
					if _, err := p.Pick(r); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkPickParallel measures contention on the pickers' shared state.
func BenchmarkPickParallel(b *testing.B) {
	for _, pol := range policies() {
		b.Run(pol.name, func(b *testing.B) {
			p := pol.build(benchSet(100))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				k := 0
				for pb.Next() {
					var r Request
					if pol.hashed {
						r = benchKeys[k&(len(benchKeys)-1)]
						k++
					}
					p.Pick(r)
				}
			})
		})
	}
}

// BenchmarkBuild measures building each picker for 10,000 endpoints, which
// happens on every apply and health change.
func BenchmarkBuild(b *testing.B) {
	s := benchSet(10000)
	for _, pol := range policies() {
		b.Run(pol.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				pol.build(s)
			}
		})
	}
}

func BenchmarkHashKey(b *testing.B) {
	key := []byte("/static/app.js?v=20240101")
	b.ReportAllocs()
	for b.Loop() {
		HashKey(key)
	}
}
