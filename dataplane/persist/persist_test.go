package persist

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// fakeClock makes a table's time explicit.
type fakeClock struct{ now int64 }

func (c *fakeClock) advance(d time.Duration) { c.now += int64(d) }

func newTestTable(size int, expire time.Duration) (*Table, *fakeClock) {
	t := NewTable(size, expire)
	c := &fakeClock{now: 1}
	t.now = func() int64 { return c.now }
	return t, c
}

func TestTableGetPutExpire(t *testing.T) {
	tab, clock := newTestTable(100, time.Minute)
	a, b := upstream.New("web", "a", "10.0.0.1:80"), upstream.New("web", "b", "10.0.0.2:80")
	c1, c2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	if got := tab.Get(c1); got != nil {
		t.Fatalf("empty table: Get = %v", got.Name)
	}
	tab.Put(c1, a)
	tab.Put(c2, b)
	if got := tab.Get(c1); got != a {
		t.Errorf("Get(c1) = %v, want a", got)
	}
	// A use renews the entry: 50s + 50s after the Put is still alive.
	clock.advance(50 * time.Second)
	if tab.Get(c1) != a {
		t.Fatal("c1 expired before its time")
	}
	clock.advance(50 * time.Second)
	if tab.Get(c1) != a {
		t.Errorf("c1 expired 50s after its last use; expire is 1m")
	}
	if tab.Get(c2) != nil {
		t.Errorf("c2 unused for 100s is still there; expire is 1m")
	}
	tab.Put(c1, b)
	if tab.Get(c1) != b {
		t.Errorf("Put did not replace c1's endpoint")
	}
	clock.advance(2 * time.Minute)
	if left := tab.Sweep(); left != 0 {
		t.Errorf("Sweep left %d entries, want 0 after every entry expired", left)
	}
}

func TestTableBounded(t *testing.T) {
	tab, clock := newTestTable(shards*2, time.Hour)
	a := upstream.New("web", "a", "10.0.0.1:80")
	for i := range 10000 {
		clock.advance(time.Millisecond)
		tab.Put(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), a)
	}
	if n := tab.Len(); n > shards*2 {
		t.Errorf("table of size %d holds %d entries", shards*2, n)
	}
	// The newest client always gets in.
	last := netip.AddrFrom4([4]byte{10, 0, 39, 15})
	if tab.Get(last) != a {
		t.Errorf("the newest client was evicted")
	}
}

func TestCookieValue(t *testing.T) {
	v := CookieValue("web", "a", "")
	if len(v) != 16 || strings.Trim(v, "0123456789abcdef") != "" {
		t.Errorf("CookieValue = %q, want 16 hex digits", v)
	}
	if v != CookieValue("web", "a", "") {
		t.Errorf("CookieValue is not stable")
	}
	if v == CookieValue("web", "b", "") || v == CookieValue("api", "a", "") {
		t.Errorf("CookieValue collides across endpoints or clusters")
	}
	if got := CookieValue("web", "a", "s1"); got != "s1" {
		t.Errorf("explicit value: got %q, want s1", got)
	}
}

func TestSetCookie(t *testing.T) {
	tests := []struct {
		c    *sluicev1.CookiePersistence
		want string
	}{
		{&sluicev1.CookiePersistence{Name: "SERVERID"}, "SERVERID=v; Path=/"},
		{&sluicev1.CookiePersistence{
			Name: "SRV", Path: "/app", Domain: "example.com", MaxAge: durationpb.New(90 * time.Minute),
			Httponly: true, Secure: true, SameSite: sluicev1.SameSite_SAME_SITE_STRICT,
		}, "SRV=v; Path=/app; Domain=example.com; Max-Age=5400; HttpOnly; Secure; SameSite=Strict"},
	}
	for _, tt := range tests {
		if got := string(SetCookie(tt.c, "v")); got != tt.want {
			t.Errorf("SetCookie = %q, want %q", got, tt.want)
		}
	}
}

func BenchmarkTableGet(b *testing.B) {
	tab := NewTable(100000, time.Hour)
	a := upstream.New("web", "a", "10.0.0.1:80")
	addrs := make([]netip.Addr, 1024)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		tab.Put(addrs[i], a)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			tab.Get(addrs[i&1023])
			i++
		}
	})
}
