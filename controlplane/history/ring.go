package history

// Window is how many seconds of history a series keeps: one hour.
const Window = 3600

// staleAfter is how long a gauge (Active, Conns) is carried forward over
// seconds without a report. Nodes report every second; a series silent
// longer than this has lost its nodes, and shows zero rather than a value
// nobody confirms.
const staleAfter = 10

// Point is one second of one series. Requests, Errors, BytesIn and BytesOut
// count what happened in that second (so they are rates per second); they
// are fractional because a report's counts are spread over the seconds it
// covers. Active and Conns are gauges: the last value known in that second.
//
// float32 keeps a Point at 24 bytes; its 24 bits of mantissa are exact for
// counts up to 16M per second and within 1e-7 beyond.
type Point struct {
	// Requests counts HTTP requests and TCP sessions sent to endpoints.
	Requests float32 `json:"requests"`
	// Errors counts 5xx responses from endpoints and failed connects.
	Errors float32 `json:"errors"`
	// BytesIn counts bytes received from endpoints, BytesOut bytes sent to
	// them.
	BytesIn  float32 `json:"bytes_in"`
	BytesOut float32 `json:"bytes_out"`
	// Active counts requests and sessions in progress; Conns the sockets
	// open to endpoints, pooled idle ones included.
	Active float32 `json:"active"`
	Conns  float32 `json:"conns"`
}

// ringBytes is the size of one series' ring: Window points of 24 bytes,
// 86,400 bytes, plus two int64s.
const ringBytes = Window*24 + 16

// ring is one series: the point of second s (Unix time) is pts[s%Window],
// valid for the Window seconds up to last.
type ring struct {
	pts  [Window]Point
	last int64 // the newest second; 0: nothing written yet
	// gaugeAt is the last second a gauge was set, for staleAfter.
	gaugeAt int64
}

// slot returns the point of second sec for writing, moving the ring
// forward when sec is newer than last, or nil when sec is older than the
// ring keeps.
func (r *ring) slot(sec int64) *Point {
	switch {
	case r.last == 0 || sec-r.last >= Window:
		r.pts = [Window]Point{}
		r.last = sec
	case sec > r.last:
		prev := r.pts[r.last%Window]
		for s := r.last + 1; s <= sec; s++ {
			p := Point{}
			if s-r.gaugeAt <= staleAfter {
				p.Active, p.Conns = prev.Active, prev.Conns
			}
			r.pts[s%Window] = p
		}
		r.last = sec
	case sec <= r.last-Window:
		return nil
	}
	return &r.pts[sec%Window]
}

// setGauges records the gauges of second sec.
func (r *ring) setGauges(sec int64, active, conns int64) {
	if p := r.slot(sec); p != nil {
		p.Active, p.Conns = float32(active), float32(conns)
		r.gaugeAt = max(r.gaugeAt, sec)
	}
}

// read copies the points of the seconds from..to (inclusive) into out, one
// per second. Seconds the ring does not hold read as zero, except that the
// gauges of the seconds after last are carried forward for staleAfter.
func (r *ring) read(from, to int64, out []Point) {
	for s := from; s <= to; s++ {
		var p Point
		switch {
		case r.last == 0 || s <= r.last-Window:
		case s <= r.last:
			p = r.pts[s%Window]
		case s-r.gaugeAt <= staleAfter:
			last := r.pts[r.last%Window]
			p.Active, p.Conns = last.Active, last.Conns
		}
		out[s-from] = p
	}
}
