package snapshot

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FieldError is one fault of a snapshot. Path locates the field in the
// document, e.g. "clusters[0].endpoints[1].weight"; it is empty for faults of
// the document as a whole (a YAML syntax error, a file that cannot be read).
type FieldError struct {
	Path    string
	Message string
}

// Error returns "path: message", or just the message when Path is empty.
func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Message
	}
	return e.Path + ": " + e.Message
}

// Errors is every fault found in a snapshot, in document order.
type Errors []FieldError

// Error returns one line per fault.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// orNil returns es as an error, or a nil error when es is empty (so callers
// never hold a non-nil error interface wrapping an empty list).
func (es Errors) orNil() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// ToStatus turns Errors (also wrapped) into a gRPC status error with code
// INVALID_ARGUMENT and a google.rpc.BadRequest detail holding one field
// violation per fault. Any other error, and nil, is returned unchanged.
func ToStatus(err error) error {
	var es Errors
	if !errors.As(err, &es) || len(es) == 0 {
		return err
	}
	msg := "invalid snapshot: " + es[0].Error()
	if len(es) > 1 {
		msg += fmt.Sprintf(" (and %d more)", len(es)-1)
	}
	br := &errdetails.BadRequest{}
	for _, e := range es {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field:       e.Path,
			Description: e.Message,
		})
	}
	st, derr := status.New(codes.InvalidArgument, msg).WithDetails(br)
	if derr != nil {
		// Only fails when the detail cannot be marshalled; keep the text.
		return status.Error(codes.InvalidArgument, msg+"\n"+es.Error())
	}
	return st.Err()
}

// FromStatus is the inverse of ToStatus: it returns the faults carried by an
// INVALID_ARGUMENT status with a BadRequest detail, and false for any other
// error.
func FromStatus(err error) (Errors, bool) {
	if err == nil {
		return nil, false
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument {
		return nil, false
	}
	var es Errors
	found := false
	for _, d := range st.Details() {
		br, ok := d.(*errdetails.BadRequest)
		if !ok {
			continue
		}
		found = true
		for _, v := range br.GetFieldViolations() {
			es = append(es, FieldError{Path: v.GetField(), Message: v.GetDescription()})
		}
	}
	if !found || len(es) == 0 {
		return nil, false
	}
	return es, true
}
