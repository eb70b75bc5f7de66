// Listener interfaces and the event queue that runs their callbacks.
import type { GroupEvent, Message, MessageReceipt } from "./types.js";

/**
 * AdvancedMsgListener receives pushed messages and read receipts. Every
 * method is optional.
 */
export interface AdvancedMsgListener {
  /**
   * A message reached this user: new ones as they are sent, and at every
   * (re)connection the stored ones this client has not seen yet. Each stored
   * message is reported at most once per Client.
   */
  onRecvNewMessage?(msg: Message): void;
  /** New read counts (group) or peer read state (C2C) of messages this user sent with needReadReceipt. */
  onRecvMessageReadReceipts?(receipts: MessageReceipt[]): void;
  /**
   * A peer marked the C2C conversation read (markC2CMessageAsRead): userID is
   * the reader, timestamp the time up to which everything is read.
   */
  onRecvC2CReadReceipt?(receipts: MessageReceipt[]): void;
  /**
   * This same user sent read receipts from another device (so that a UI can
   * clear its unread marks). The messages carry msgID, seq and userID or
   * groupID, with receiptSent set.
   */
  onRecvSelfReadReceipts?(msgs: Message[]): void;
}

/** GroupListener receives membership changes of the user's groups. */
export interface GroupListener {
  onGroupEvent?(ev: GroupEvent): void;
}

/** ConnListener follows the state of the client's connection. */
export interface ConnListener {
  /** A successful login (first or after a reconnection). */
  onConnected?(): void;
  /** The connection was lost or closed; err says why (the server's reason for a kickoff). */
  onDisconnected?(err: Error): void;
  /** A reconnection attempt starts. */
  onReconnecting?(): void;
}

/** maxHeld bounds the events kept while no listener was added yet; the oldest are dropped beyond it. */
const maxHeld = 10000;

/**
 * EventQueue runs listener callbacks one at a time, in the order the events
 * happened. Events are held until the first listener of any kind is added,
 * so that a listener added right after dial sees the messages synced at
 * login. A callback that throws is reported to onError and does not stop
 * the others.
 */
export class EventQueue {
  readonly advanced: AdvancedMsgListener[] = [];
  readonly group: GroupListener[] = [];
  readonly conn: ConnListener[] = [];
  private items: Array<() => void> = [];
  private held = true;
  private running = false;
  private closed = false;

  constructor(private readonly onError: (err: unknown) => void) {}

  add<T>(list: T[], l: T): void {
    if (l == null) return;
    if (!list.includes(l)) list.push(l);
    this.held = false;
    this.drain();
  }

  remove<T>(list: T[], l: T): void {
    const i = list.indexOf(l);
    if (i >= 0) list.splice(i, 1);
  }

  /** isHeld reports whether no listener was added yet. */
  get isHeld(): boolean {
    return this.held;
  }

  /** push queues f; the listener lists are read when it runs, so a removed listener gets no later event. */
  push(f: () => void): void {
    if (this.closed) return;
    if (this.held && this.items.length >= maxHeld) this.items.shift();
    this.items.push(f);
    this.drain();
  }

  /** close drops the queued events and refuses new ones. */
  close(): void {
    this.closed = true;
    this.items = [];
  }

  private drain(): void {
    if (this.running || this.held) return; // a callback that causes events leaves them to the running loop
    this.running = true;
    try {
      for (let f = this.items.shift(); f !== undefined; f = this.items.shift()) {
        try {
          f();
        } catch (err) {
          this.onError(err);
        }
      }
    } finally {
      this.running = false;
    }
  }

  each<T>(list: T[], f: (l: T) => void): void {
    for (const l of [...list]) {
      try {
        f(l);
      } catch (err) {
        this.onError(err);
      }
    }
  }
}
