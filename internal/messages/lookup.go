package messages

import (
	"context"
	"errors"
	"strconv"
	"strings"

	pb "github.com/readmark/readmark/api/readmarkv1"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/conv"
	"github.com/readmark/readmark/internal/storage"
)

// idTimeSlack bounds how far back Lookup scans past a message ID's
// creation time: stored times grow with seq but clocks may step back a
// little.
const idTimeSlack = 60_000

// Lookup returns a stored message of the conversation key for an operator
// (no membership check): the one at seq if seq > 0, else the one with
// msgID. A message is found by ID with a scan from the newest message back
// to shortly before the time its ID carries.
func (s *Service) Lookup(ctx context.Context, key string, seq uint64, msgID string) (*pb.Message, error) {
	if seq > 0 {
		v, err := s.cfg.Store.Get(ctx, conv.MessageKey(key, seq))
		if errors.Is(err, storage.ErrNotFound) {
			return nil, apierr.NotFound("no message at seq %d", seq)
		}
		if err != nil {
			return nil, err
		}
		m, _, err := decodeStored(v)
		if err != nil {
			return nil, err
		}
		if msgID != "" && m.MsgId != msgID {
			return nil, apierr.NotFound("message %s not found at seq %d", msgID, seq)
		}
		return m, nil
	}
	hexTime, _, ok := strings.Cut(msgID, "-")
	idTime, err := strconv.ParseInt(hexTime, 16, 64)
	if !ok || err != nil {
		return nil, apierr.InvalidArgument("message ID %q is not one this server made", msgID)
	}
	p := conv.MessagePrefix(key)
	var found *pb.Message
	var decErr error
	err = s.cfg.Store.Scan(ctx, p, storage.PrefixEnd(p), true, func(_, v []byte) bool {
		m, _, err := decodeStored(v)
		if err != nil {
			decErr = err
			return false
		}
		if m.MsgId == msgID {
			found = m
			return false
		}
		return m.TimeMs >= idTime-idTimeSlack
	})
	if err == nil {
		err = decErr
	}
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, apierr.NotFound("message %s not found", msgID)
	}
	return found, nil
}
