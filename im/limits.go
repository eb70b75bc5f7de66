package im

import pb "github.com/readmark/readmark/api/readmarkv1"

// The checks below keep requests within the limits the server announced at
// login, so that a request over them fails alone, with the code the server
// would give, instead of reaching the server (which closes the connection
// for an oversized frame and fails every request in flight on it). A limit
// of 0 (not announced) is not checked.

func (c *Client) announced() *pb.Limits {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.limits
}

// checkCount fails with CodeTooMany when n is over limit.
func checkCount(what string, n int, limit uint32) error {
	if limit > 0 && n > int(limit) {
		return errorf(CodeTooMany, "%d %s; the server's limit is %d", n, what, limit)
	}
	return nil
}

// checkBody fails with CodeMessageTooLarge when msg's text or custom data is
// over its limit.
func checkBody(msg *Message, l *pb.Limits) error {
	if max := l.GetMaxTextBytes(); max > 0 && len(msg.Text) > int(max) {
		return errorf(CodeMessageTooLarge, "text is %d bytes; the limit is %d", len(msg.Text), max)
	}
	if max := l.GetMaxCustomDataBytes(); max > 0 && len(msg.CustomData) > int(max) {
		return errorf(CodeMessageTooLarge, "custom data is %d bytes; the limit is %d", len(msg.CustomData), max)
	}
	return nil
}

// checkFrame fails with CodeInvalidArgument when an encoded request is over
// the frame limit.
func (c *Client) checkFrame(encoded []byte) error {
	if max := c.announced().GetMaxFrameBytes(); max > 0 && len(encoded) > int(max) {
		return errorf(CodeInvalidArgument, "request of %d bytes is over the frame limit of %d", len(encoded), max)
	}
	return nil
}
