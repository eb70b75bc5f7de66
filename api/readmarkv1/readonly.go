package readmarkv1

// ReadOnly reports whether request f changes nothing that must be kept, so
// that it may be abandoned at any point: the server stops it once its
// connection is gone, as nobody is left to read the answer. A request that
// writes always runs to its end, even for a client that left, as its write
// may already be committed. Sync counts as read-only: the cursors it
// carries only move the device's delivery positions forward, each on its
// own, and the client sends them again with its next sync. A new request
// type is not read-only until classified here.
func ReadOnly(f *ClientFrame) bool {
	switch f.Body.(type) {
	case *ClientFrame_Ping, *ClientFrame_Sync, *ClientFrame_History,
		*ClientFrame_GetReceipts, *ClientFrame_ReadMembers:
		return true
	}
	return false
}
