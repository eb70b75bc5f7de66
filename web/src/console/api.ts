// The admin API as the console uses it (docs/admin.md).
import { call } from "../shared/http";

export const groupTypes = ["Work", "Public", "Meeting", "Community", "AVChatRoom"] as const;

export interface Settings {
  read_receipt_group_types: string[];
}

export interface Overview {
  version: string;
  go_version: string;
  storage: string;
  started_ms: number;
  uptime_ms: number;
  now_ms: number;
  sessions: number;
  requests: Array<{ type: string; code: string; count: number }>;
  pushes: number;
  group_commits: { count: number; sum: number; upper_bounds: number[]; buckets: number[] };
  goroutines: number;
  resident_memory_bytes: number;
}

export interface LookupResult {
  message: {
    msg_id: string;
    seq: number;
    sender: string;
    receiver?: string;
    group_id?: string;
    time_ms: number;
    need_read_receipt: boolean;
    text?: string;
    custom_data_bytes?: number;
  };
  receipt?: { read_count?: number; unread_count?: number; is_peer_read?: boolean; peer_read_time_ms?: number };
}

export interface ReadMembersPage {
  members: Array<{ user_id: string; nick_name?: string; read_time_ms: number }>;
  next_seq: number;
  is_finished: boolean;
}

/** Admin is the admin API with one token. */
export class Admin {
  constructor(readonly token: string) {}

  getSettings(): Promise<Settings> {
    return call("GET", "/v1/admin/settings", { token: this.token });
  }
  putSettings(s: Settings): Promise<Settings> {
    return call("PUT", "/v1/admin/settings", { token: this.token, body: s });
  }
  overview(): Promise<Overview> {
    return call("GET", "/v1/admin/overview", { token: this.token });
  }
  lookup(q: Record<string, string>): Promise<LookupResult> {
    return call("GET", "/v1/admin/messages/lookup?" + new URLSearchParams(q).toString(), { token: this.token });
  }
  readMembers(groupID: string, seq: number, filter: "read" | "unread", nextSeq: number, count: number): Promise<ReadMembersPage> {
    const q = new URLSearchParams({ filter, next_seq: String(nextSeq), count: String(count) });
    return call("GET", `/v1/admin/groups/${encodeURIComponent(groupID)}/messages/${seq}/read-members?${q}`, { token: this.token });
  }
}
