// Delivery state: which stored messages this client has handed to the
// application, the sync-time buffer of pushes, and what to acknowledge.
// The rules are the Go SDK's (im/sync.go) and docs/protocol.md section 7.
import { create } from "@bufbuild/protobuf";
import * as pb from "./gen/readmark_pb.js";
import { type ConvKey, convOf, convToPB } from "./types.js";

/**
 * Delivery reports each stored message at most once, in seq order per
 * conversation. While a sync runs, pushes are buffered; when it ends, synced
 * and buffered messages are merged in seq order per conversation — not simply
 * "synced first": for a conversation the client sent no cursor for, the
 * server starts after what it already pushed to the user's sessions, which
 * can include pushes to this very session still in the buffer.
 */
export class Delivery {
  /** Highest seq delivered to the application (or sent by this client), per conversation. */
  readonly delivered = new Map<ConvKey, number>();
  /** Seqs this client sent beyond delivered: their echo is not reported. */
  private readonly ownSent = new Map<ConvKey, Set<number>>();
  private syncing = false;
  private buffered: pb.Message[] = [];
  /** Conversations whose delivered seq moved since the last acknowledgement. */
  private readonly dirty = new Set<ConvKey>();

  constructor(
    private readonly me: string,
    private readonly emit: (m: pb.Message) => void,
  ) {}

  /** startSync begins a sync after a login: pushes are buffered until finishSync. */
  startSync(): void {
    this.syncing = true;
    this.buffered = [];
  }

  /** cursors are the per-conversation highest delivered seqs, sent with the first sync request. */
  cursors(): pb.SyncCursor[] {
    return [...this.delivered].map(([k, seq]) =>
      create(pb.SyncCursorSchema, { conversation: convToPB(k), seq: BigInt(seq) }),
    );
  }

  /** finishSync delivers the synced messages and the pushes buffered meanwhile, merged in seq order. */
  finishSync(synced: pb.Message[]): void {
    // Synced copies first, so that of two copies of one message the synced
    // one (which carries receipt_sent) is the one delivered.
    for (const m of inSeqOrder([...synced, ...this.buffered], this.me)) this.deliver(m);
    this.buffered = [];
    this.syncing = false;
  }

  /** push handles a pushed new message. */
  push(m: pb.Message): void {
    if (this.syncing) this.buffered.push(m);
    else this.deliver(m);
  }

  /** deliver reports m unless it was delivered (or sent by this client) before. */
  private deliver(m: pb.Message): void {
    const seq = Number(m.seq);
    if (seq === 0) {
      this.emit(m); // online_user_only: never stored, never synced
      return;
    }
    const k = convOf(m, this.me);
    if (seq <= (this.delivered.get(k) ?? 0)) return;
    this.advance(k, seq);
    const own = this.ownSent.get(k);
    if (own) {
      const mine = own.has(seq);
      for (const s of own) if (s <= seq) own.delete(s);
      if (own.size === 0) this.ownSent.delete(k);
      if (mine) return; // sent by this client: sendMessage returned it
    }
    this.emit(m);
  }

  /** sentOwn records a message this client sent, so that its echo by push or sync is not reported as new. */
  sentOwn(m: pb.Message): void {
    const seq = Number(m.seq);
    if (seq === 0) return;
    const k = convOf(m, this.me);
    const d = this.delivered.get(k) ?? 0;
    if (seq <= d) return;
    if (seq === d + 1) {
      this.advance(k, seq);
      return;
    }
    let own = this.ownSent.get(k);
    if (!own) this.ownSent.set(k, (own = new Set()));
    own.add(seq);
  }

  private advance(k: ConvKey, seq: number): void {
    this.delivered.set(k, seq);
    this.dirty.add(k);
  }

  /** takeAck returns the cursors of the conversations delivered since the last call. */
  takeAck(): pb.SyncCursor[] {
    const out = [...this.dirty].map((k) =>
      create(pb.SyncCursorSchema, { conversation: convToPB(k), seq: BigInt(this.delivered.get(k) ?? 0) }),
    );
    this.dirty.clear();
    return out;
  }
}

/**
 * inSeqOrder drops repeated copies of a message (keeping the first) and
 * reorders the rest so that each conversation's messages are in seq order,
 * keeping the positions each conversation occupies (and online-only
 * messages, seq 0, where they are): interleaving across conversations is
 * preserved, order within one is fixed.
 */
export function inSeqOrder(msgs: pb.Message[], me: string): pb.Message[] {
  const seen = new Set<string>();
  const unique: pb.Message[] = [];
  const byConv = new Map<ConvKey, pb.Message[]>();
  for (const m of msgs) {
    if (m.seq !== 0n) {
      const k = convOf(m, me);
      const id = `${k}\u0000${m.seq}`;
      if (seen.has(id)) continue; // a later copy of one already listed
      seen.add(id);
      let list = byConv.get(k);
      if (!list) byConv.set(k, (list = []));
      list.push(m);
    }
    unique.push(m);
  }
  for (const list of byConv.values()) list.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
  return unique.map((m) => (m.seq === 0n ? m : byConv.get(convOf(m, me))!.shift()!));
}
