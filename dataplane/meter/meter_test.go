package meter

import (
	"testing"
	"time"
)

func TestClassOf(t *testing.T) {
	for _, tt := range []struct {
		status int
		want   string
	}{{0, "other"}, {99, "other"}, {100, "1xx"}, {101, "1xx"}, {200, "2xx"}, {304, "3xx"}, {404, "4xx"}, {503, "5xx"}, {599, "5xx"}, {600, "other"}} {
		if got := ClassOf(tt.status).String(); got != tt.want {
			t.Errorf("ClassOf(%d) = %s, want %s", tt.status, got, tt.want)
		}
	}
}

// TestHistogramBuckets: a duration lands in the first bucket whose bound
// it does not pass (Prometheus' le is inclusive), one past the last bound
// only in +Inf, and the sum is exact.
func TestHistogramBuckets(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{300 * time.Microsecond, time.Millisecond, 1001 * time.Microsecond, 7 * time.Second, 2 * time.Minute} {
		h.Observe(d)
	}
	cum, count, sum := h.Read()
	want := map[time.Duration]uint64{
		500 * time.Microsecond:  1, // 300µs
		time.Millisecond:        2, // and 1ms, on the bound
		2500 * time.Microsecond: 3, // and 1.001ms
		5 * time.Second:         3,
		10 * time.Second:        4, // and 7s
		time.Minute:             4, // 2m is only in +Inf
	}
	for i, b := range Buckets {
		if w, ok := want[b]; ok && cum[i] != w {
			t.Errorf("le=%v: %d, want %d", b, cum[i], w)
		}
	}
	if count != 5 {
		t.Errorf("count = %d, want 5", count)
	}
	wantSum := (300*time.Microsecond + time.Millisecond + 1001*time.Microsecond + 7*time.Second + 2*time.Minute).Seconds()
	if sum != wantSum {
		t.Errorf("sum = %v, want %v", sum, wantSum)
	}
}

type recordLog struct {
	sample bool
	got    []string
}

func (r *recordLog) Sample() bool { return r.sample }
func (r *recordLog) Log(listener string, x *Exchange) {
	r.got = append(r.got, listener+" "+string(x.Method)+" "+x.Cluster.Name())
}

// TestDone: an exchange counts in its listener and its cluster by the
// class of the status the client got, with its bytes, retries and
// latencies; a TCP session is no request of the listener, and bytes
// counted as they moved (Transferred) are not counted again when it ends;
// only exchanges marked Logged reach the log.
func TestDone(t *testing.T) {
	log := &recordLog{sample: true}
	l, c := NewListener("public", log), NewCluster("web")
	l.Opened()
	l.Opened()
	l.Closed()
	l.Done(&Exchange{Proto: ProtoHTTP11, Method: []byte("GET"), Status: 200, Cluster: c, BytesIn: 10, BytesOut: 20, Connect: time.Millisecond, FirstByte: 2 * time.Millisecond, Total: 3 * time.Millisecond, Logged: true})
	l.Done(&Exchange{Proto: ProtoHTTP11, Status: 503, Cluster: c, Retries: 2, Total: time.Millisecond})
	l.Done(&Exchange{Proto: ProtoHTTP11, Status: 0, BytesIn: 5, Total: time.Millisecond})
	l.Transferred(1, 1)
	l.Transferred(2, 0)
	l.Done(&Exchange{Proto: ProtoTCP, Cluster: c, BytesIn: 3, BytesOut: 1, CountedIn: 3, CountedOut: 1, Total: time.Second})

	lk := l.Counts()
	if lk.Active != 1 || lk.Connections != 2 {
		t.Errorf("listener connections: active %d, total %d; want 1, 2", lk.Active, lk.Connections)
	}
	if want := [NumClasses]uint64{Class2xx: 1, Class5xx: 1, ClassOther: 1}; lk.Requests != want {
		t.Errorf("listener requests = %v, want %v", lk.Requests, want)
	}
	if lk.BytesIn != 18 || lk.BytesOut != 21 {
		t.Errorf("listener bytes in %d, out %d; want 18, 21", lk.BytesIn, lk.BytesOut)
	}
	ck := c.Counts()
	if want := [NumClasses]uint64{Class2xx: 1, Class5xx: 1, ClassOther: 1}; ck.Requests != want {
		t.Errorf("cluster requests = %v, want %v", ck.Requests, want)
	}
	if ck.Retries != 2 {
		t.Errorf("cluster retries = %d, want 2", ck.Retries)
	}
	for name, h := range map[string]*Histogram{"listener connect": &l.Connect, "cluster connect": &c.Connect, "cluster first byte": &c.FirstByte} {
		if _, n, _ := h.Read(); n != 1 {
			t.Errorf("%s observed %d, want 1", name, n)
		}
	}
	if _, n, _ := c.Total.Read(); n != 3 {
		t.Errorf("cluster total observed %d, want 3", n)
	}
	if len(log.got) != 1 || log.got[0] != "public GET web" {
		t.Errorf("logged %q, want the one Logged exchange", log.got)
	}
}

// BenchmarkDone is the cost of counting one request on the request path:
// it must not allocate.
func BenchmarkDone(b *testing.B) {
	l, c := NewListener("public", nil), NewCluster("web")
	x := &Exchange{Proto: ProtoHTTP11, Status: 200, Cluster: c, BytesIn: 100, BytesOut: 1000, FirstByte: 300 * time.Microsecond, Total: 400 * time.Microsecond}
	b.ReportAllocs()
	for b.Loop() {
		l.Done(x)
	}
}
