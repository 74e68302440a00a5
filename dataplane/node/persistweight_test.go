package node

import (
	"io"
	"net"
	"net/http"
	"testing"
)

// TestWeightZeroKeepsPersistentClients: an endpoint set to weight 0 takes
// no new clients but keeps those persisted to it, by cookie and by stick
// table, as HAProxy's weight 0 does: the way to retire a server while its
// sessions finish. Drained, it keeps none of them.
func TestWeightZeroKeepsPersistentClients(t *testing.T) {
	n := newNode(t)
	a, b := backend(t, "a"), backend(t, "b")
	web, stuck := freeAddr(t), freeAddr(t)
	const tmpl = `
clusters:
  - name: shop
    cookie: { name: SERVERID, indirect: true }
    endpoints: [{ name: a, address: "%[1]s", cookie: ca, %[3]s }, { name: b, address: "%[2]s", cookie: cb }]
  - name: sticky
    stick: { on: SOURCE_IP }
    endpoints: [{ name: a, address: "%[1]s", %[3]s }, { name: b, address: "%[2]s" }]
listeners:
  - { name: web, address: "%[4]s", protocol: HTTP, default_cluster: shop }
  - { name: stuck, address: "%[5]s", protocol: HTTP, default_cluster: sticky }
`
	apply := func(version, a1 string) {
		t.Helper()
		if err := n.Apply(version, parse(t, tmpl, a, b, a1, web, stuck)); err != nil {
			t.Fatal(err)
		}
	}
	apply("1", "weight: 1")

	// get answers which backend served, and the SERVERID cookie set, if
	// any; from is the client's source address, 127.0.0.from.
	get := func(addr, cookie string, from byte) (backend, set string) {
		t.Helper()
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, from)}, Timeout: testTimeout}
		client := &http.Client{Timeout: testTimeout, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		if cookie != "" {
			req.Header.Set("Cookie", "SERVERID="+cookie)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, c := range resp.Cookies() {
			if c.Name == "SERVERID" {
				set = c.Value
			}
		}
		return string(body), set
	}
	home := map[byte]string{} // the stick table's endpoint of 127.0.0.i
	for i := byte(1); i <= 4; i++ {
		home[i], _ = get(stuck, "", i)
	}
	var onA byte
	for i, h := range home {
		if h == "a" {
			onA = i
		}
	}
	if onA == 0 {
		t.Fatalf("four clients stuck to %v, none to a", home)
	}

	apply("2", "weight: 0")
	for range 3 {
		if got, set := get(web, "ca", 1); got != "a" || set != "" {
			t.Errorf("a at weight 0, cookie ca: answered by %s with cookie %q; want a, keeping its client, no new cookie", got, set)
		}
		if got, set := get(web, "", 1); got != "b" || set != "cb" {
			t.Errorf("a at weight 0, no cookie: answered by %s with cookie %q; want b and cookie cb", got, set)
		}
		if got, _ := get(stuck, "", onA); got != "a" {
			t.Errorf("a at weight 0: client 127.0.0.%d, stuck to a, went to %s", onA, got)
		}
		if got, _ := get(stuck, "", 9); got != "b" {
			t.Errorf("a at weight 0: a new client went to %s, want b", got)
		}
	}

	apply("3", "state: DRAINING")
	if got, set := get(web, "ca", 1); got != "b" || set != "cb" {
		t.Errorf("a draining, cookie ca: answered by %s with cookie %q; want b and cookie cb", got, set)
	}
	if got, _ := get(stuck, "", onA); got != "b" {
		t.Errorf("a draining: client 127.0.0.%d, stuck to a, went to %s; want b", onA, got)
	}
}
