// Package apierr is the server side of Readmark's client-facing errors: an
// error with one of the codes of api/readmarkv1/errors.json. Services return
// them; the gateway and the admin API put code and text on the wire. Any other
// error reaching the edge is reported as CodeInternal and logged.
package apierr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// Error is a client-facing failure.
type Error struct {
	Code int32
	Desc string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (%d): %s", pb.CodeName[e.Code], e.Code, e.Desc)
}

// New returns an *Error with a formatted description.
func New(code int32, format string, args ...any) *Error {
	return &Error{Code: code, Desc: fmt.Sprintf(format, args...)}
}

// From returns err as an *Error: itself if it is one (or wraps one), else a
// CodeInternal error that does not leak the internal text.
func From(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: pb.CodeInternal, Desc: "internal error"}
}

// Is reports whether err is (or wraps) an *Error with code.
func Is(err error, code int32) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// WriteHTTP answers an HTTP request with err as a JSON body
// {"code": N, "name": "...", "desc": "..."} and the code's HTTP status from
// errors.json.
func WriteHTTP(w http.ResponseWriter, err error) {
	e := From(err)
	status := pb.CodeHTTPStatus[e.Code]
	if status == 0 {
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"code": e.Code, "name": pb.CodeName[e.Code], "desc": e.Desc})
}

// Shorthands for the common codes.

func InvalidArgument(format string, args ...any) *Error {
	return New(pb.CodeInvalidArgument, format, args...)
}
func PermissionDenied(format string, args ...any) *Error {
	return New(pb.CodePermissionDenied, format, args...)
}
func NotFound(format string, args ...any) *Error { return New(pb.CodeNotFound, format, args...) }
func TooMany(format string, args ...any) *Error  { return New(pb.CodeTooMany, format, args...) }
