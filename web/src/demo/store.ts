// The demo's state: conversations with their messages and the read state of
// the user's own messages, fed by the SDK's listeners. Components subscribe
// and re-render on every change.
import {
  Client,
  codeNames,
  GroupEventCreated,
  GroupEventJoined,
  GroupEventKicked,
  GroupEventQuit,
  ReadmarkError,
  type GroupEvent,
  type Message,
  type MessageReceipt,
} from "@readmark/sdk";

export type ConvKind = "group" | "c2c";

export interface Conv {
  key: string; // "g:<group>" or "p:<peer>"
  kind: ConvKind;
  id: string; // group ID or peer user ID
  groupType?: string;
  messages: Message[]; // by seq ascending
  historyLoaded: boolean;
  unread: number;
  /** C2C: the peer marked the conversation read up to this time (Unix ms). */
  peerReadTime: number;
  left: boolean;
}

/** The most messages a conversation loads from history when opened. */
const historyPage = 50;
/** The most messages per sendMessageReadReceipts / getMessageReadReceipts call. */
const batch = 100;

export function describe(err: unknown): string {
  if (err instanceof ReadmarkError) return `Code${codeNames[err.code] ?? ""} (${err.code}): ${err.desc}`;
  return err instanceof Error ? err.message : String(err);
}

function chunks<T>(xs: T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

export class Store {
  readonly convs = new Map<string, Conv>();
  /** Read state of this user's messages, by msgID. */
  readonly receipts = new Map<string, MessageReceipt>();
  connected = true;
  openKey = "";
  private subs = new Set<() => void>();
  private pendingAcks = new Map<string, Map<string, Message>>(); // conv key -> msgID -> message
  private ackTimer = 0;
  private readonly savedKey: string;
  client!: Client;

  constructor(readonly userID: string) {
    this.savedKey = `readmark.demo.convs.${userID}`;
    for (const c of this.loadSaved()) this.ensure(c.kind, c.id, c.groupType);
  }

  subscribe(f: () => void): () => void {
    this.subs.add(f);
    return () => this.subs.delete(f);
  }

  private changed(): void {
    for (const f of this.subs) f();
  }

  // ---- conversations ----

  ensure(kind: ConvKind, id: string, groupType?: string): Conv {
    const key = (kind === "group" ? "g:" : "p:") + id;
    let c = this.convs.get(key);
    if (!c) {
      c = { key, kind, id, groupType, messages: [], historyLoaded: false, unread: 0, peerReadTime: 0, left: false };
      this.convs.set(key, c);
      this.save();
    } else if (groupType && !c.groupType) {
      c.groupType = groupType;
      this.save();
    }
    return c;
  }

  /** sorted lists conversations, the most recent activity first. */
  sorted(): Conv[] {
    const last = (c: Conv) => c.messages.at(-1)?.timestamp ?? 0;
    return [...this.convs.values()].sort((a, b) => last(b) - last(a) || a.key.localeCompare(b.key));
  }

  private loadSaved(): Array<{ kind: ConvKind; id: string; groupType?: string }> {
    try {
      return JSON.parse(localStorage.getItem(this.savedKey) ?? "[]");
    } catch {
      return [];
    }
  }

  private save(): void {
    const list = [...this.convs.values()].map((c) => ({ kind: c.kind, id: c.id, groupType: c.groupType }));
    localStorage.setItem(this.savedKey, JSON.stringify(list));
  }

  private convOf(m: Message): Conv {
    return m.groupID ? this.ensure("group", m.groupID) : this.ensure("c2c", m.userID);
  }

  /** add merges messages into their conversations (by msgID, in seq order). */
  private add(msgs: Message[], live: boolean): void {
    for (const m of msgs) {
      const c = this.convOf(m);
      if (c.messages.some((x) => x.msgID === m.msgID)) continue;
      c.messages.push(m);
      c.messages.sort((a, b) => a.seq - b.seq || a.timestamp - b.timestamp);
      if (live && !m.isSelf && (c.key !== this.openKey || document.visibilityState !== "visible")) c.unread++;
    }
  }

  open(key: string): void {
    this.openKey = key;
    const c = this.convs.get(key);
    if (c) c.unread = 0;
    this.changed();
    if (c && !c.historyLoaded) void this.loadHistory(c);
  }

  async loadHistory(c: Conv): Promise<void> {
    const msgs =
      c.kind === "group"
        ? await this.client.getGroupHistoryMessageList(c.id, historyPage)
        : await this.client.getC2CHistoryMessageList(c.id, historyPage);
    c.historyLoaded = true;
    this.add(msgs, false);
    this.changed();
    await this.refreshReceipts(msgs.filter((m) => m.isSelf && m.needReadReceipt));
  }

  /** refreshReceipts pulls the read state of own messages. */
  async refreshReceipts(own: Message[]): Promise<void> {
    for (const part of chunks(own, batch)) {
      const rs = await this.client.getMessageReadReceipts(part);
      this.noteReceipts(rs);
    }
  }

  private noteReceipts(rs: MessageReceipt[]): void {
    for (const r of rs) {
      this.receipts.set(r.msgID, r);
      if (r.userID && r.timestamp) {
        const c = this.ensure("c2c", r.userID);
        c.peerReadTime = Math.max(c.peerReadTime, r.timestamp);
      }
    }
    this.changed();
  }

  // ---- actions ----

  async send(c: Conv, text: string, needReadReceipt: boolean): Promise<void> {
    const msg = this.client.createTextMessage(text);
    msg.needReadReceipt = needReadReceipt;
    const sent = await this.client.sendMessage(msg, c.kind === "group" ? { groupID: c.id } : { receiver: c.id });
    this.add([sent], false);
    this.changed();
    if (needReadReceipt) await this.refreshReceipts([sent]);
  }

  async createGroup(type: string, groupID: string, name: string, members: string[]): Promise<Conv> {
    const id = await this.client.createGroup(type as Parameters<Client["createGroup"]>[0], groupID, name, members);
    const c = this.ensure("group", id, type);
    this.changed();
    return c;
  }

  async joinGroup(groupID: string): Promise<Conv> {
    await this.client.joinGroup(groupID);
    const c = this.ensure("group", groupID);
    this.changed();
    return c;
  }

  async markAllRead(c: Conv): Promise<void> {
    await this.client.markC2CMessageAsRead(c.id);
    for (const m of c.messages) if (!m.isSelf) m.receiptSent = true;
    c.unread = 0;
    this.changed();
  }

  /**
   * seen queues a read receipt for an incoming message that came into view;
   * what is queued within a moment goes out as one call per conversation
   * (one per screenful).
   */
  seen(m: Message): void {
    if (m.isSelf || !m.needReadReceipt || m.receiptSent) return;
    const key = m.groupID ? "g:" + m.groupID : "p:" + m.userID;
    let q = this.pendingAcks.get(key);
    if (!q) this.pendingAcks.set(key, (q = new Map()));
    q.set(m.msgID, m);
    clearTimeout(this.ackTimer);
    this.ackTimer = window.setTimeout(() => void this.flushAcks(), 150);
  }

  private async flushAcks(): Promise<void> {
    const all = this.pendingAcks;
    this.pendingAcks = new Map();
    for (const q of all.values()) {
      for (const part of chunks([...q.values()], batch)) {
        try {
          await this.client.sendMessageReadReceipts(part);
          for (const m of part) m.receiptSent = true;
        } catch (err) {
          console.warn("read receipts:", describe(err));
        }
      }
    }
    this.changed();
  }

  // ---- listeners ----

  readonly listener = {
    onRecvNewMessage: (m: Message) => {
      this.add([m], true);
      this.changed();
    },
    onRecvMessageReadReceipts: (rs: MessageReceipt[]) => this.noteReceipts(rs),
    onRecvC2CReadReceipt: (rs: MessageReceipt[]) => {
      for (const r of rs) {
        const c = this.ensure("c2c", r.userID);
        c.peerReadTime = Math.max(c.peerReadTime, r.timestamp);
      }
      this.changed();
    },
    onRecvSelfReadReceipts: (ms: Message[]) => {
      const ids = new Set(ms.map((m) => m.msgID));
      for (const c of this.convs.values()) for (const m of c.messages) if (ids.has(m.msgID)) m.receiptSent = true;
      this.changed();
    },
    onGroupEvent: (ev: GroupEvent) => {
      if (!ev.userIDs.includes(this.userID)) return;
      const c = this.ensure("group", ev.groupID, ev.groupType || undefined);
      if (ev.kind === GroupEventCreated || ev.kind === GroupEventJoined) c.left = false;
      if (ev.kind === GroupEventQuit || ev.kind === GroupEventKicked) c.left = true;
      this.changed();
    },
    onConnected: () => {
      this.connected = true;
      this.changed();
    },
    onDisconnected: () => {
      this.connected = false;
      this.changed();
    },
  };
}
