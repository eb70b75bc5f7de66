package readmarkv1

// Idempotent reports whether running request f twice has the same effect as
// running it once, so that a request whose outcome is unknown (the
// connection or a forward was cut before the answer) may be sent again:
// everything but membership changes and sends without a client_msg_id.
// Clients and the cluster's forwarding share this rule (docs/protocol.md).
func Idempotent(f *ClientFrame) bool {
	switch b := f.Body.(type) {
	case *ClientFrame_SendMessage:
		return b.SendMessage.GetClientMsgId() != ""
	case *ClientFrame_CreateGroup, *ClientFrame_Invite, *ClientFrame_Kick,
		*ClientFrame_QuitGroup, *ClientFrame_JoinGroup:
		return false
	}
	return true
}
