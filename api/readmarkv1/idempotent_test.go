package readmarkv1

import "testing"

func TestIdempotent(t *testing.T) {
	tests := []struct {
		name string
		f    *ClientFrame
		want bool
	}{
		{"send with client_msg_id", &ClientFrame{Body: &ClientFrame_SendMessage{SendMessage: &SendMessageRequest{ClientMsgId: "m1"}}}, true},
		{"send without client_msg_id", &ClientFrame{Body: &ClientFrame_SendMessage{SendMessage: &SendMessageRequest{}}}, false},
		{"create group", &ClientFrame{Body: &ClientFrame_CreateGroup{CreateGroup: &CreateGroupRequest{}}}, false},
		{"invite", &ClientFrame{Body: &ClientFrame_Invite{Invite: &InviteRequest{}}}, false},
		{"kick", &ClientFrame{Body: &ClientFrame_Kick{Kick: &KickRequest{}}}, false},
		{"quit", &ClientFrame{Body: &ClientFrame_QuitGroup{QuitGroup: &QuitGroupRequest{}}}, false},
		{"join", &ClientFrame{Body: &ClientFrame_JoinGroup{JoinGroup: &JoinGroupRequest{}}}, false},
		{"receipts", &ClientFrame{Body: &ClientFrame_SendReceipts{SendReceipts: &SendReceiptsRequest{}}}, true},
		{"history", &ClientFrame{Body: &ClientFrame_History{History: &HistoryRequest{}}}, true},
		{"mark read", &ClientFrame{Body: &ClientFrame_MarkC2CRead{MarkC2CRead: &MarkC2CReadRequest{}}}, true},
	}
	for _, tt := range tests {
		if got := Idempotent(tt.f); got != tt.want {
			t.Errorf("%s: Idempotent = %v, want %v", tt.name, got, tt.want)
		}
	}
}
