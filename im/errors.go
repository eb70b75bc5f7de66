package im

import (
	"errors"
	"fmt"

	pb "github.com/readmark/readmark/api/readmarkv1"
)

// Error is a failure reported by the server, or detected by the SDK before a
// request could be sent (CodeInvalidArgument) or answered (CodeUnavailable).
// Code is one of the Code constants; docs/errors.md explains each.
type Error struct {
	Code int
	Desc string
}

// Error formats the error as "im: Name (code): desc".
func (e *Error) Error() string {
	name, ok := pb.CodeName[int32(e.Code)]
	if !ok {
		name = "Code"
	}
	if e.Desc == "" {
		return fmt.Sprintf("im: %s (%d)", name, e.Code)
	}
	return fmt.Sprintf("im: %s (%d): %s", name, e.Code, e.Desc)
}

func errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Desc: fmt.Sprintf(format, args...)}
}

func fromPB(e *pb.Error) *Error {
	if e == nil {
		return nil
	}
	return &Error{Code: int(e.GetCode()), Desc: e.GetDesc()}
}

// errUnavailable returns the error of a request cut off by a lost connection.
func errUnavailable(desc string) *Error { return &Error{Code: CodeUnavailable, Desc: desc} }

// isCode reports whether err is (or wraps) an *Error with code.
func isCode(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}
