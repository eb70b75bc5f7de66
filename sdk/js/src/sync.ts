// Delivery state: which stored messages this client has handed to the
// application, the sync-time buffer of pushes, and what to acknowledge.
// The rules are the Go SDK's (im/sync.go, im/ack.go) and docs/protocol.md
// section 7.
import { create } from "@bufbuild/protobuf";
import * as pb from "./gen/readmark_pb.js";
import { type ConvKey, convFromPB, convOf, convToPB } from "./types.js";

/** DeliveryHooks connect the delivery state to the client's event queue. */
export interface DeliveryHooks {
  /** Report m to the listeners; call handed() once they have run (stored messages only: k is set). */
  emit(m: pb.Message, k: ConvKey | undefined): void;
  /** A message this client sent counts as handed once the events queued before it have run. */
  own(k: ConvKey, seq: number): void;
}

/**
 * Delivery reports each stored message at most once, in seq order per
 * conversation: it keeps per conversation the highest seq delivered and
 * drops anything at or below it. While a sync runs, pushes are buffered and
 * delivered after its last page (they continue where the sync ends: the
 * session was registered for pushes before the sync started). It also
 * tracks what the listeners were handed and what the server was told, for
 * the acknowledgements.
 */
export class Delivery {
  /** Highest seq delivered to the listeners (or sent by this client), per conversation. */
  private readonly delivered = new Map<ConvKey, number>();
  /** Seqs this client sent beyond delivered: their echo is not reported. */
  private readonly ownSent = new Map<ConvKey, Set<number>>();
  /** sendMessage calls not resolved yet, per conversation. */
  private readonly sending = new Map<ConvKey, number>();
  /** Messages waiting for the sends to their conversation to resolve (see deliver), in seq order. */
  private readonly held = new Map<ConvKey, { msgs: pb.Message[]; top: number }>();
  private syncing = false;
  private buffered: pb.Message[] = [];
  /** Highest seq the listeners have seen (or this client sent), per conversation. */
  private readonly handedSeq = new Map<ConvKey, number>();
  /** Highest seq acknowledged to the server, per conversation. */
  private readonly ackedSeq = new Map<ConvKey, number>();
  /**
   * Conversations handed beyond what was acknowledged, and since when (ms):
   * toAck looks at no other, as it runs for every request.
   */
  private readonly unacked = new Map<ConvKey, number>();

  constructor(
    private readonly me: string,
    private readonly hooks: DeliveryHooks,
  ) {}

  /** startSync begins a sync after a login: pushes are buffered until finishSync. */
  startSync(): void {
    this.syncing = true;
    this.buffered = [];
  }

  /**
   * cursors are the per-conversation highest delivered seqs, sent with each
   * sync request: the server continues after them. They are not
   * acknowledgements (no_ack): delivered is not yet handed.
   */
  cursors(): pb.SyncCursor[] {
    // Held messages count as received: continue after them, or the server
    // would send them again, page after page, while they wait.
    const received = new Map(this.delivered);
    for (const [k, h] of this.held) received.set(k, h.top);
    return cursorsOf(received);
  }

  /** handAllReceived counts everything delivered or held as handed: for close() of a client that never had a listener. */
  handAllReceived(): void {
    for (const [k, seq] of this.delivered) this.handed(k, seq);
    for (const [k, h] of this.held) this.handed(k, h.top);
  }

  /** syncPage delivers one page of synced messages. */
  syncPage(msgs: pb.Message[]): void {
    for (const m of msgs) this.deliver(m);
  }

  /** finishSync delivers the pushes buffered during the sync and goes live. */
  finishSync(): void {
    for (const m of this.buffered) this.deliver(m); // in seq order per conversation, as pushed
    this.buffered = [];
    this.syncing = false;
  }

  /** push handles a pushed new message. */
  push(m: pb.Message): void {
    if (this.syncing) this.buffered.push(m);
    else this.deliver(m);
  }

  /**
   * deliver reports m unless it was delivered (or sent by this client)
   * before. A message of this user, in a conversation with a sendMessage
   * unresolved, may be that send's own, by sync or push ahead of its
   * response: it is held, and the conversation's later messages after it (to
   * keep seq order), until the sends resolve (sendEnd), so that sentOwn can
   * tell first.
   */
  private deliver(m: pb.Message): void {
    const seq = Number(m.seq);
    if (seq === 0) {
      this.hooks.emit(m, undefined); // online_user_only: never stored, never synced
      return;
    }
    const k = convOf(m, this.me);
    const h = this.held.get(k);
    if (h) {
      if (seq > h.top) {
        h.msgs.push(m);
        h.top = seq;
      }
      return;
    }
    if (seq <= (this.delivered.get(k) ?? 0)) return;
    if ((this.sending.get(k) ?? 0) > 0 && m.sender === this.me && !this.ownSent.get(k)?.has(seq)) {
      this.held.set(k, { msgs: [m], top: seq });
      return;
    }
    this.delivered.set(k, seq);
    const own = this.ownSent.get(k);
    if (own) {
      const mine = own.has(seq);
      for (const s of own) if (s <= seq) own.delete(s);
      if (own.size === 0) this.ownSent.delete(k);
      if (mine) {
        this.hooks.own(k, seq); // sent by this client: sendMessage returned it
        return;
      }
    }
    this.hooks.emit(m, k);
  }

  /** sendBegin records a sendMessage to conversation k in progress. */
  sendBegin(k: ConvKey): void {
    this.sending.set(k, (this.sending.get(k) ?? 0) + 1);
  }

  /**
   * sendEnd resolves a sendMessage to k: m is the message stored, undefined
   * if the send failed. When no send to k is left, the messages held for them
   * are delivered, the own ones recognised.
   */
  sendEnd(k: ConvKey, m: pb.Message | undefined): void {
    if (m) this.sentOwn(m);
    const n = (this.sending.get(k) ?? 0) - 1;
    if (n > 0) {
      this.sending.set(k, n);
      return;
    }
    this.sending.delete(k);
    const h = this.held.get(k);
    this.held.delete(k);
    for (const hm of h?.msgs ?? []) this.deliver(hm);
  }

  /** sentOwn records a message this client sent, so that its echo by push or sync is not reported as new. */
  sentOwn(m: pb.Message): void {
    const seq = Number(m.seq);
    if (seq === 0) return;
    const k = convOf(m, this.me);
    const d = this.delivered.get(k) ?? 0;
    if (seq <= d) return;
    if (seq === d + 1) {
      this.delivered.set(k, seq);
      this.hooks.own(k, seq);
      return;
    }
    let own = this.ownSent.get(k);
    if (!own) this.ownSent.set(k, (own = new Set()));
    own.add(seq);
  }

  /** handed records that the listeners have seen seq of conversation k (or that it was this client's own). */
  handed(k: ConvKey, seq: number): void {
    if (seq <= (this.handedSeq.get(k) ?? 0)) return;
    this.handedSeq.set(k, seq);
    if (seq > (this.ackedSeq.get(k) ?? 0) && !this.unacked.has(k)) this.unacked.set(k, Date.now());
  }

  /**
   * toAck returns up to max cursors where what was handed grew since the
   * last acknowledgement, unacknowledged since dueBy (ms) or earlier: a
   * request carries all, the ack timer what no request carried for ackDelay.
   */
  toAck(max = Infinity, dueBy = Infinity): pb.SyncCursor[] {
    const grown = new Map<ConvKey, number>();
    for (const [k, since] of this.unacked) {
      if (grown.size >= max) break;
      if (since <= dueBy) grown.set(k, this.handedSeq.get(k) ?? 0);
    }
    return cursorsOf(grown);
  }

  /** oldestDue returns since when (ms) the longest-unacknowledged conversation is, or undefined if none is. */
  oldestDue(): number | undefined {
    let oldest: number | undefined;
    for (const since of this.unacked.values()) if (oldest === undefined || since < oldest) oldest = since;
    return oldest;
  }

  /**
   * newSession makes everything handed due again for a new session: an
   * acknowledgement written on the ended one may have been lost with it, and
   * the sync cursors do not acknowledge. It reports whether any is due.
   */
  newSession(): boolean {
    this.ackedSeq.clear();
    const now = Date.now();
    for (const k of this.handedSeq.keys()) if (!this.unacked.has(k)) this.unacked.set(k, now);
    return this.unacked.size > 0;
  }

  /** acked records an acknowledgement written (with no_reply or riding on a request) or accepted. */
  acked(cursors: pb.SyncCursor[]): void {
    for (const c of cursors) {
      const k = convFromPB(c.conversation);
      const seq = Math.max(this.ackedSeq.get(k) ?? 0, Number(c.seq));
      this.ackedSeq.set(k, seq);
      // What was handed beyond seq is due from about now.
      if (seq >= (this.handedSeq.get(k) ?? 0)) this.unacked.delete(k);
      else if (this.unacked.has(k)) this.unacked.set(k, Date.now());
    }
  }
}

function cursorsOf(m: Map<ConvKey, number>): pb.SyncCursor[] {
  return [...m].map(([k, seq]) => create(pb.SyncCursorSchema, { conversation: convToPB(k), seq: BigInt(seq) }));
}
