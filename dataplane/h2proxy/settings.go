package h2proxy

import "encoding/binary"

// dedupSettings rewrites the settings in b, a SETTINGS frame's payload (6
// bytes each), in place, and returns the length of what is left.
//
// RFC 9113 §6.5.3 has the values of a SETTINGS frame processed in the
// order they appear, so a repeated setting is legal and the last value
// wins; net/http's server instead ends the connection with PROTOCOL_ERROR
// (a defense it chose against settings floods, h2spec case 6.5.3). Such a
// frame reaches net/http with each repeated setting once: its last value,
// where that value stands, which has the same outcome as processing them
// all in order (window changes add up to the last one). Two cases are
// left as they came, to fail as net/http fails them: a repeated
// SETTINGS_HEADER_TABLE_SIZE, where order matters to HPACK (the encoder
// must signal the smallest of the values, RFC 7541 §4.2), and a setting
// whose values include one the RFC refuses, where processing in order
// fails at that value: the first invalid value is kept alone, so net/http
// fails with the error code the RFC asks for.
func dedupSettings(b []byte) int {
	n := len(b) / settingLen
	id := func(i int) uint16 { return binary.BigEndian.Uint16(b[i*settingLen:]) }
	val := func(i int) uint32 { return binary.BigEndian.Uint32(b[i*settingLen+2:]) }
	keep := make([]bool, n)
	for i := range n {
		keep[i] = true
		firstBad := -1
		repeated := false
		for j := range n {
			if j != i && id(j) == id(i) {
				repeated = true
			}
			if id(j) == id(i) && firstBad < 0 && !validSetting(id(j), val(j)) {
				firstBad = j
			}
		}
		switch {
		case !repeated || id(i) == settingTableSize:
		case firstBad >= 0:
			keep[i] = i == firstBad
		default:
			for j := i + 1; j < n; j++ {
				if id(j) == id(i) {
					keep[i] = false // a later value wins
				}
			}
		}
	}
	w := 0
	for i := range n {
		if keep[i] {
			copy(b[w:w+settingLen], b[i*settingLen:(i+1)*settingLen])
			w += settingLen
		}
	}
	return w
}

// validSetting reports whether RFC 9113 §6.5.2 (and RFC 8441 §3 for
// SETTINGS_ENABLE_CONNECT_PROTOCOL) allows v for the setting id.
func validSetting(id uint16, v uint32) bool {
	switch id {
	case 0x2, 0x8: // ENABLE_PUSH, ENABLE_CONNECT_PROTOCOL
		return v <= 1
	case 0x4: // INITIAL_WINDOW_SIZE
		return v <= 1<<31-1
	case 0x5: // MAX_FRAME_SIZE
		return v >= 1<<14 && v <= 1<<24-1
	}
	return true
}
