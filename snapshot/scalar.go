package snapshot

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Well-known message types written as a single scalar.
const (
	durationName  protoreflect.FullName = "google.protobuf.Duration"
	timestampName protoreflect.FullName = "google.protobuf.Timestamp"
)

// scalarMessage reports whether messages of md are written as one scalar.
func scalarMessage(md protoreflect.MessageDescriptor) bool {
	switch md.FullName() {
	case durationName, timestampName:
		return true
	}
	return false
}

// YAML core-schema tags of the scalars the codec writes.
const (
	tagStr   = "!!str"
	tagInt   = "!!int"
	tagFloat = "!!float"
	tagBool  = "!!bool"
)

// scalarText renders a singular, non-message value (or a scalar well-known
// message) as text plus the YAML tag that keeps its type.
func scalarText(fd protoreflect.FieldDescriptor, v protoreflect.Value) (string, string, error) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return strconv.FormatBool(v.Bool()), tagBool, nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return strconv.FormatInt(v.Int(), 10), tagInt, nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return strconv.FormatUint(v.Uint(), 10), tagInt, nil
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		f := v.Float()
		bits := 64
		if fd.Kind() == protoreflect.FloatKind {
			bits = 32
		}
		switch {
		case math.IsNaN(f):
			return ".nan", tagFloat, nil
		case math.IsInf(f, 1):
			return ".inf", tagFloat, nil
		case math.IsInf(f, -1):
			return "-.inf", tagFloat, nil
		}
		s := strconv.FormatFloat(f, 'g', -1, bits)
		if !strings.ContainsAny(s, ".eEn") {
			s += ".0" // stay a float on the way back
		}
		return s, tagFloat, nil
	case protoreflect.StringKind:
		return v.String(), tagStr, nil
	case protoreflect.BytesKind:
		return base64.StdEncoding.EncodeToString(v.Bytes()), tagStr, nil
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return enumShortName(ev), tagStr, nil
		}
		return strconv.FormatInt(int64(v.Enum()), 10), tagInt, nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		m := v.Message()
		switch m.Descriptor().FullName() {
		case durationName:
			s, err := formatDuration(m)
			return s, tagStr, err
		case timestampName:
			s, err := formatTimestamp(m)
			return s, tagStr, err
		}
	}
	return "", "", fmt.Errorf("%s: cannot be written as a scalar", fd.Name())
}

func secondsNanos(m protoreflect.Message) (int64, int32) {
	f := m.Descriptor().Fields()
	return m.Get(f.ByNumber(1)).Int(), int32(m.Get(f.ByNumber(2)).Int())
}

// maxDurationSeconds is the largest whole second a time.Duration holds.
const maxDurationSeconds = math.MaxInt64 / int64(time.Second)

// formatDuration writes a google.protobuf.Duration as a Go duration string,
// trimmed of zero units: "1h", "1m30s", "250ms".
func formatDuration(m protoreflect.Message) (string, error) {
	sec, nanos := secondsNanos(m)
	if sec > maxDurationSeconds || sec < -maxDurationSeconds ||
		nanos <= -1e9 || nanos >= 1e9 || (sec > 0 && nanos < 0) || (sec < 0 && nanos > 0) {
		return "", fmt.Errorf("duration %ds %dns is out of range", sec, nanos)
	}
	return FormatDuration(time.Duration(sec)*time.Second + time.Duration(nanos)), nil
}

// FormatDuration writes d as snapshots write durations: a Go duration
// string trimmed of zero units, "1h" for 1h0m0s, "1m30s", "250ms".
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// parseDuration reads a Go duration string into seconds and nanos.
func parseDuration(s string) (int64, int32, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, 0, err
	}
	return int64(d / time.Second), int32(d % time.Second), nil
}

func formatTimestamp(m protoreflect.Message) (string, error) {
	sec, nanos := secondsNanos(m)
	if nanos < 0 || nanos >= 1e9 {
		return "", fmt.Errorf("timestamp %ds %dns is out of range", sec, nanos)
	}
	t := time.Unix(sec, int64(nanos)).UTC()
	if t.Year() < 1 || t.Year() > 9999 {
		return "", fmt.Errorf("timestamp %ds is out of range", sec)
	}
	return t.Format(time.RFC3339Nano), nil
}

func parseTimestamp(s string) (int64, int32, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, 0, fmt.Errorf("want an RFC 3339 time like 2006-01-02T15:04:05Z")
	}
	return t.Unix(), int32(t.Nanosecond()), nil
}
