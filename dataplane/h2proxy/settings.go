package h2proxy

import (
	"encoding/binary"
	"io"
)

// settingsReader sits between a client's HTTP/2 connection and net/http's
// server, and rewrites one thing: a SETTINGS frame that names a setting
// more than once. RFC 9113 §6.5.3 has the values of a SETTINGS frame
// processed in the order they appear, so a repeated setting is legal and
// the last value wins; net/http's server instead ends the connection with
// PROTOCOL_ERROR (a defense it chose against settings floods, h2spec case
// 6.5.3). Such a frame reaches net/http with each repeated setting once:
// its last value, where that value stands, which has the same outcome as
// processing them all in order (window changes add up to the last one).
// Two cases are left as they came, to fail as net/http fails them: a
// repeated SETTINGS_HEADER_TABLE_SIZE, where order matters to HPACK (the
// encoder must signal the smallest of the values, RFC 7541 §4.2), and a
// setting whose values include one the RFC refuses, where processing in
// order fails at that value: the first invalid value is kept alone, so
// net/http fails with the error code the RFC asks for.
//
// Every other byte passes unchanged; the reader only follows frame
// boundaries (9-byte headers and their lengths), after the connection
// preface.
type settingsReader struct {
	r io.Reader
	// skip is what is left of the current frame's payload (or of the
	// preface) to pass through as it comes.
	skip int
	// held is a frame header, or a whole SETTINGS frame, read and not yet
	// handed on; held[off:] is what is left of it.
	held []byte
	off  int
	err  error // the read error after held is handed on
}

const (
	frameHeaderLen   = 9
	frameSettings    = 0x4
	flagAck          = 0x1
	settingLen       = 6
	settingTableSize = 0x1
	// maxSettingsHeld bounds the SETTINGS frames rewritten: net/http
	// refuses more than 100 settings in one frame anyway.
	maxSettingsHeld = 100 * settingLen
)

func newSettingsReader(r io.Reader) *settingsReader {
	return &settingsReader{r: r, skip: len(h2Preface), held: make([]byte, 0, frameHeaderLen+maxSettingsHeld)}
}

// h2Preface is the client connection preface (RFC 9113 §3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func (s *settingsReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if s.off < len(s.held) {
			n := copy(p, s.held[s.off:])
			s.off += n
			return n, nil
		}
		if s.err != nil {
			return 0, s.err
		}
		if s.skip > 0 {
			n, err := s.r.Read(p[:min(len(p), s.skip)])
			s.skip -= n
			return n, err
		}
		s.next()
	}
}

// next reads the next frame header, and a SETTINGS frame whole, into held.
func (s *settingsReader) next() {
	s.held, s.off = s.held[:frameHeaderLen], 0
	if !s.fill(s.held) {
		return
	}
	length := int(s.held[0])<<16 | int(s.held[1])<<8 | int(s.held[2])
	if s.held[3] != frameSettings || s.held[4]&flagAck != 0 || length%settingLen != 0 || length > maxSettingsHeld {
		s.skip = length
		return
	}
	s.held = s.held[:frameHeaderLen+length]
	if !s.fill(s.held[frameHeaderLen:]) {
		return
	}
	kept := dedupSettings(s.held[frameHeaderLen:])
	s.held = s.held[:frameHeaderLen+kept]
	s.held[0], s.held[1], s.held[2] = byte(kept>>16), byte(kept>>8), byte(kept)
}

// fill reads b whole. On a read error it keeps what came in held (cut to
// it) and the error, for Read to hand on in that order.
func (s *settingsReader) fill(b []byte) bool {
	n, err := io.ReadFull(s.r, b)
	if err == nil {
		return true
	}
	if err == io.ErrUnexpectedEOF {
		err = io.EOF // the reader's own end, as net/http would have seen it
	}
	s.held = s.held[:len(s.held)-len(b)+n]
	s.err = err
	return false
}

// dedupSettings rewrites the settings in b (6 bytes each) in place as
// settingsReader says, and returns the length of what is left.
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

// settingsConn is an HTTP/2 client connection whose reads go through a
// settingsReader.
type settingsConn struct {
	*countConn
	sr *settingsReader
}

func newSettingsConn(c *countConn) *settingsConn {
	return &settingsConn{countConn: c, sr: newSettingsReader(c)}
}

func (c *settingsConn) Read(p []byte) (int, error) { return c.sr.Read(p) }
