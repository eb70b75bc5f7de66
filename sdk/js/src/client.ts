// The Client: connection life cycle (login, sync, reconnection with backoff
// over one or more server addresses) and the API of the Go SDK in
// TypeScript style.
import { create } from "@bufbuild/protobuf";
import * as pb from "./gen/readmark_pb.js";
import {
  CodeInvalidArgument,
  CodeInternal,
  CodeMessageTooLarge,
  CodeTooMany,
  CodeUnauthenticated,
  CodeUnavailable,
} from "./codes.js";
import { ReadmarkError, unavailable } from "./errors.js";
import { type AdvancedMsgListener, type ConnListener, EventQueue, type GroupListener } from "./listeners.js";
import { type RequestBody, Session, type WebSocketConstructor } from "./session.js";
import { Delivery } from "./sync.js";
import {
  type ConvKey,
  convKey,
  type GroupMessageReadMemberList,
  type GroupMessageReadMembersFilter,
  type GroupType,
  type Limits,
  type Message,
  type MessageReceipt,
  type Priority,
  ElemCustom,
  ElemText,
  groupEventFromPB,
  groupTypeOf,
  limitsFromPB,
  memberFromPB,
  messageFromPB,
  newMessage,
  receiptFromPB,
  refOf,
  selfReceiptFromPB,
} from "./types.js";

/** Options of Client.dial. Durations are in milliseconds. */
export interface ClientOptions {
  /**
   * The WebSocket class. Default: globalThis.WebSocket (browsers, Node ≥ 22).
   * In Node 20 pass the ws package's: `import WebSocket from "ws"`.
   */
  WebSocket?: WebSocketConstructor;
  /**
   * Names this installation to the server, which keeps one delivery cursor
   * per (user, device). Default: a random ID kept in localStorage (one per
   * user ID) where there is one, else a random ID per Client. "" asks for a
   * device of its own for each session.
   */
  deviceID?: string;
  /** Reconnect after a lost connection (default true). Without it the client stops and calls fail with CodeUnavailable. */
  reconnect?: boolean;
  /** First delay between reconnection attempts (default 100); it doubles up to backoffMax, with random jitter. */
  backoffMin?: number;
  /** Largest delay between reconnection attempts (default 5000). */
  backoffMax?: number;
  /** How long connecting and logging in may take (default 10000). */
  loginTimeout?: number;
  /**
   * Default limit of each call, waiting for a reconnection included (default
   * 30000; 0 = none). Per call: CallOptions.timeout.
   */
  timeout?: number;
  /**
   * How long (ms, default 1000) a message the listeners were handed waits for
   * a request to carry its acknowledgement before an AckRequest is sent for
   * it; AckRequests go at most once per ackDelay.
   */
  ackDelay?: number;
  /** Speak the readmark.v1.json subprotocol instead of binary protobuf (for debugging). */
  json?: boolean;
  /** Free-form client name sent at login, for server logs. */
  sdk?: string;
  /** Listeners registered before the connection starts (so that they see the first onConnected). */
  listeners?: Array<AdvancedMsgListener & GroupListener & ConnListener>;
  /** Called with an error thrown by a listener callback (default: console.error). */
  onListenerError?: (err: unknown) => void;
}

/** Options of a single call. */
export interface CallOptions {
  /** Aborting it fails the call with CodeUnavailable (its reason as the cause). */
  signal?: AbortSignal;
  /** Time limit of the call in ms, waiting for a reconnection included (default: ClientOptions.timeout). */
  timeout?: number;
}

/** Options of sendMessage: exactly one of receiver and groupID. */
export interface SendMessageOptions extends CallOptions {
  receiver?: string;
  groupID?: string;
  priority?: Priority;
  /** Relay to online sessions only; never stored (seq 0), no receipts. */
  onlineUserOnly?: boolean;
}

const endpointPath = "/v1/ws";
const syncPageSize = 200;
const closeWait = 2000;
/** maxCursorsPerFrame keeps a request's cursors well within the 64 KiB frame limit in either encoding. */
const maxCursorsPerFrame = 256;

/**
 * Client is a connection to a Readmark server on behalf of one user. It
 * reconnects by itself and may be used by any number of concurrent calls.
 */
export class Client {
  private readonly urls: string[];
  private url: string;
  private readonly opts: Required<Omit<ClientOptions, "WebSocket" | "listeners" | "deviceID">> & {
    WebSocket: WebSocketConstructor;
  };
  private readonly deviceID: string;
  private idSeq = 0n;
  private readonly events: EventQueue;
  private readonly delivery: Delivery;

  private sess: Session | undefined;
  private lastLimits: Limits;
  private waiters = new Set<() => void>();
  private stopErr: ReadmarkError | undefined;
  private closing = false;
  private readonly stopCtl = new AbortController();
  private runDone: Promise<void> = Promise.resolve();
  private ackTimer: ReturnType<typeof setTimeout> | undefined;

  private constructor(
    urls: string[],
    readonly userID: string,
    private readonly token: string,
    options: ClientOptions,
  ) {
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) {
      throw new ReadmarkError(CodeInvalidArgument, "no WebSocket class: pass options.WebSocket (e.g. the ws package's)");
    }
    this.urls = urls;
    this.url = urls[Math.floor(Math.random() * urls.length)];
    this.opts = {
      WebSocket: WS,
      reconnect: options.reconnect ?? true,
      backoffMin: Math.max(options.backoffMin ?? 100, 1),
      backoffMax: Math.max(options.backoffMax ?? 5000, options.backoffMin ?? 1),
      loginTimeout: options.loginTimeout ?? 10000,
      timeout: options.timeout ?? 30000,
      ackDelay: options.ackDelay ?? 1000,
      json: options.json ?? false,
      sdk: options.sdk ?? "readmark-js/0.1",
      onListenerError: options.onListenerError ?? ((err) => console.error("readmark: listener failed:", err)),
    };
    this.deviceID = options.deviceID ?? defaultDeviceID(userID);
    this.events = new EventQueue(this.opts.onListenerError);
    for (const l of options.listeners ?? []) this.addListenerAny(l);
    this.delivery = new Delivery(userID, {
      emit: (m, k) => this.emitNewMessage(m, k),
      own: (k, seq) => this.events.push(() => this.handed(k, seq)),
    });
    this.lastLimits = limitsFromPB(undefined);
  }

  /**
   * dial connects to serverURL (e.g. "ws://127.0.0.1:7700"; http and https
   * are accepted too; several addresses separated by commas: one is picked at
   * random, and after a lost connection the client reconnects to another),
   * logs in as userID with token and syncs the messages stored while the user
   * was away (reported to the listeners as new messages). A rejected token
   * fails with a ReadmarkError of code CodeUnauthenticated.
   */
  static async dial(serverURL: string, userID: string, token: string, options: ClientOptions = {}): Promise<Client> {
    const urls = serverURL
      .split(",")
      .map((u) => u.trim())
      .filter((u) => u !== "")
      .map(endpoint);
    if (urls.length === 0) throw new ReadmarkError(CodeInvalidArgument, "no server URL");
    const c = new Client(urls, userID, token, options);
    // Each address once, the picked one first, until one takes the login.
    const order = [c.url, ...shuffle(urls.filter((u) => u !== c.url))];
    let last: unknown;
    for (const u of order) {
      try {
        const s = await c.connect(u);
        c.runDone = c.run(s);
        return c;
      } catch (err) {
        last = err;
        if (err instanceof ReadmarkError && err.code === CodeUnauthenticated) break;
      }
    }
    c.events.close();
    throw last;
  }

  /** limits are the server's limits announced at the last login. */
  get limits(): Limits {
    return this.lastLimits;
  }

  /**
   * close acknowledges the messages the listeners were handed (best effort,
   * waiting a second at most), stops reconnecting, closes the connection and
   * fails the calls in flight with CodeUnavailable. It may be called from a
   * listener callback, and more than once.
   */
  async close(): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      // Best effort: acknowledge what the application has seen, so that the
      // next login of this device does not report it again. The server
      // applies an ack with no_reply before it reads the next frame, so it
      // has this one when it answers the close (awaited in run). A client
      // that never had a listener takes no events: what it received counts
      // as handed, or every login of this device would sync it all again
      // (one that ends without close() acknowledges nothing: a repeat).
      if (this.events.isHeld) this.delivery.handAllReceived();
      await this.sendAcks(true);
      this.stopCtl.abort();
      clearTimeout(this.ackTimer);
      this.sess?.end(unavailable("client closed"), true);
      this.stop(unavailable("client closed"));
    }
    await this.runDone;
    this.events.close();
  }

  // ---- connection life cycle ----

  private nextID(): bigint {
    return ++this.idSeq;
  }

  private connect(url: string): Promise<Session> {
    this.url = url;
    // The first sync page rides on the login, saving a round trip; with more
    // cursors than a frame takes, sync acknowledges them first and requests
    // the page itself.
    const cursors = this.delivery.cursors();
    const sync = cursors.length <= maxCursorsPerFrame ? create(pb.SyncRequestSchema, syncRequest(cursors)) : undefined;
    // Pushes may come before the login response (the server registers the
    // session for them first): buffered from now, for after the sync.
    this.delivery.startSync();
    return Session.open(
      {
        url,
        userID: this.userID,
        token: this.token,
        sdk: this.opts.sdk,
        deviceID: this.deviceID,
        json: this.opts.json,
        timeoutMs: this.opts.loginTimeout,
        WebSocket: this.opts.WebSocket,
        signal: this.stopCtl.signal,
        sync,
      },
      {
        nextID: () => this.nextID(),
        onPush: (f) => this.push(f),
        onEnd: (s) => {
          if (this.sess === s) this.sess = undefined;
        },
        log: () => {},
        acksDue: () => this.delivery.toAck(maxCursorsPerFrame),
        acksSent: (cursors) => this.delivery.acked(cursors),
      },
    ).then((s) => {
      this.lastLimits = limitsFromPB(s.login.limits);
      return s;
    });
  }

  /** run owns the connection life cycle: sync after each login, then wait for the session to end and reconnect with backoff. */
  private async run(first: Session): Promise<void> {
    let s: Session | undefined = first;
    let backoff = this.opts.backoffMin;
    for (;;) {
      if (this.closing) {
        s.end(unavailable("client closed"), true);
        await s.closed(closeWait);
        return;
      }
      if (!s.ended) {
        this.sess = s;
        this.wake();
      }
      this.emitConn((l) => l.onConnected?.());
      await this.sync(s);
      const err = await s.done;
      this.emitConn((l) => l.onDisconnected?.(err));
      if (this.closing) {
        await s.closed(closeWait);
        this.stop(unavailable("client closed"));
        return;
      }
      if (err instanceof ReadmarkError && err.code === CodeUnauthenticated) {
        this.stop(err);
        return;
      }
      if (!this.opts.reconnect) {
        this.stop(unavailable(`connection lost: ${err.message}`, err));
        return;
      }
      for (s = undefined; s === undefined; ) {
        const d = jitter(backoff);
        backoff = Math.min(backoff * 2, this.opts.backoffMax);
        if (!(await sleep(d, this.stopCtl.signal))) {
          this.stop(unavailable("client closed"));
          return;
        }
        this.emitConn((l) => l.onReconnecting?.());
        try {
          s = await this.connect(this.otherURL());
        } catch (e) {
          if (e instanceof ReadmarkError && e.code === CodeUnauthenticated) {
            this.emitConn((l) => l.onDisconnected?.(e));
            this.stop(e);
            return;
          }
          if (this.closing) {
            this.stop(unavailable("client closed"));
            return;
          }
        }
      }
      backoff = this.opts.backoffMin;
    }
  }

  /** otherURL picks the address for a reconnection: another one than the last, at random, when there are several. */
  private otherURL(): string {
    const others = this.urls.filter((u) => u !== this.url);
    return others.length === 0 ? this.url : others[Math.floor(Math.random() * others.length)];
  }

  /** stop records that no session will come any more; waiting calls fail with err. */
  private stop(err: ReadmarkError): void {
    this.stopErr ??= err;
    clearTimeout(this.ackTimer);
    this.wake();
  }

  private wake(): void {
    const ws = [...this.waiters];
    this.waiters.clear();
    for (const w of ws) w();
  }

  /** session returns the current session, waiting for one while disconnected. */
  private async session(signal: AbortSignal): Promise<Session> {
    for (;;) {
      if (this.sess && !this.sess.ended) return this.sess;
      if (this.stopErr) throw this.stopErr;
      signal.throwIfAborted();
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => {
          this.waiters.delete(w);
          reject(signal.reason);
        };
        const w = (): void => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        };
        this.waiters.add(w);
        signal.addEventListener("abort", onAbort, { once: true });
      });
    }
  }

  /**
   * sync fetches the stored messages this client's device has not
   * acknowledged, after a login, and delivers them page by page; pushes
   * received meanwhile are delivered after the last page (see Delivery). The
   * first page comes with the login response when the login asked for it
   * (see connect) and the server answered it; the others by SyncRequest.
   * Each request's cursors are the highest seqs delivered (or held) per
   * conversation, which the server continues after. They are sent with
   * no_ack: delivered is not yet handed (queued for the listeners, or held),
   * and only what was handed may be acknowledged (riding on the next
   * requests or sent by the ack timer), or a client that ends before handing
   * them would never get them again on this device.
   */
  private async sync(s: Session): Promise<void> {
    // What was handed is due again on the new session (see Delivery.newSession).
    if (this.delivery.newSession()) this.scheduleAck();
    let page = s.login.sync;
    for (;;) {
      if (!page) {
        const r = await this.fetchSyncPage(s);
        if (r === "lost") return; // the session ended; the next one syncs again
        if (r === "refused") break; // go live without the backlog rather than reconnecting in a loop
        page = r;
      }
      if (!this.syncPage(page)) break;
      page = undefined;
    }
    this.delivery.finishSync();
  }

  /** fetchSyncPage requests the next sync page. */
  private async fetchSyncPage(s: Session): Promise<pb.SyncResponse | "lost" | "refused"> {
    let cursors = this.delivery.cursors();
    if (cursors.length > maxCursorsPerFrame) {
      // Too many for one frame: acknowledge them first; the sync then
      // starts from the device's cursors, which they moved.
      // Confirmed: the sync must start after the cursors they move.
      // The one exception to acknowledging only what was handed (a backlog
      // in over 256 conversations): what is still queued or held is lost to
      // this device if the client ends before handing it.
      const a = await ack(s, cursors, undefined, false);
      if (a === "lost") return "lost";
      cursors = []; // refused: sync anyway; repeats are dropped by seq
    }
    let r;
    try {
      r = await s.roundTrip({ case: "sync", value: syncRequest(cursors) });
    } catch {
      return "refused"; // cannot be encoded (over the frame limit)
    }
    if (r.kind !== "ok") return "lost";
    const f = r.frame;
    if (f.error) return f.error.code === CodeUnavailable ? "lost" : "refused";
    return f.body.case === "sync" ? f.body.value : "refused";
  }

  /** syncPage delivers a sync page, whichever frame carried it, and reports whether more follow. */
  private syncPage(page: pb.SyncResponse): boolean {
    this.delivery.syncPage(page.messages);
    return page.more && page.messages.length > 0;
  }

  /** handed records that the listeners saw a stored message, to be acknowledged shortly. */
  private handed(k: ConvKey, seq: number): void {
    this.delivery.handed(k, seq);
    this.scheduleAck();
  }

  /**
   * scheduleAck starts the ack timer unless it runs: it goes off when the
   * longest-unacknowledged conversation has waited ackDelay for a request
   * to carry it, and not within rest (ms) from now.
   */
  private scheduleAck(rest = 0): void {
    if (this.ackTimer !== undefined || this.closing) return;
    const oldest = this.delivery.oldestDue();
    if (oldest === undefined) return;
    this.ackTimer = setTimeout(
      () => {
        this.ackTimer = undefined;
        const due = this.delivery.oldestDue();
        if (due === undefined || due + this.opts.ackDelay > Date.now()) {
          this.scheduleAck(); // a request carried it: time the next
          return;
        }
        void this.sendAcks().finally(() => this.scheduleAck(this.opts.ackDelay));
      },
      Math.max(rest, oldest + this.opts.ackDelay - Date.now()),
    );
  }

  /**
   * sendAcks tells the server, on the current session, the highest seq
   * handed per conversation where it grew since the last acknowledgement:
   * from the timer, what no request carried on its way (Session.frame) for
   * ackDelay; from close, all of it.
   * Without a session it does nothing: the next login makes it all due again
   * (Delivery.newSession). Unconfirmed (no_reply): an answer would cost the
   * server a write, and a lost acknowledgement only means a repeat (dropped
   * by seq) after the next login of this device.
   */
  private async sendAcks(all = false): Promise<void> {
    const s = this.sess;
    if (!s || s.ended) return;
    const cursors = this.delivery.toAck(Infinity, all ? Infinity : Date.now() - this.opts.ackDelay);
    if (cursors.length > 0 && (await ack(s, cursors, undefined, true)) === "ok") this.delivery.acked(cursors);
  }

  private push(f: pb.ServerFrame): void {
    switch (f.body.case) {
      case "newMessage":
        this.delivery.push(f.body.value);
        return;
      case "receipts": {
        const rs = f.body.value.receipts.map(receiptFromPB);
        this.events.push(() => this.events.each(this.events.advanced, (l) => l.onRecvMessageReadReceipts?.(rs)));
        return;
      }
      case "c2cRead": {
        const rs = f.body.value.receipts.map(receiptFromPB);
        this.events.push(() => this.events.each(this.events.advanced, (l) => l.onRecvC2CReadReceipt?.(rs)));
        return;
      }
      case "selfReceipts": {
        const ms = f.body.value.messages.map(selfReceiptFromPB);
        this.events.push(() => this.events.each(this.events.advanced, (l) => l.onRecvSelfReadReceipts?.(ms)));
        return;
      }
      case "groupEvent": {
        const ev = groupEventFromPB(f.body.value);
        this.events.push(() => this.events.each(this.events.group, (l) => l.onGroupEvent?.(ev)));
        return;
      }
      default:
      // a push this version does not know: ignored (docs/protocol.md section 2)
    }
  }

  /** emitNewMessage queues m for the listeners; a stored message (k set) counts as handed once they ran. */
  private emitNewMessage(m: pb.Message, k: ConvKey | undefined): void {
    const msg = messageFromPB(m, this.userID);
    this.events.push(() => {
      this.events.each(this.events.advanced, (l) => l.onRecvNewMessage?.(msg));
      if (k !== undefined) this.handed(k, msg.seq);
    });
  }

  private emitConn(f: (l: ConnListener) => void): void {
    this.events.push(() => this.events.each(this.events.conn, f));
  }

  /**
   * call sends a request and waits for its response, waiting for a session
   * while disconnected. retry: the request is idempotent, so a request cut
   * off by a lost connection is sent again on the next one.
   */
  private async call(body: RequestBody, opts: CallOptions | undefined, retry: boolean): Promise<pb.ServerFrame> {
    const { signal, done } = callSignal(opts, this.opts.timeout);
    const abortErr = (): ReadmarkError =>
      signal.reason instanceof ReadmarkError ? signal.reason : unavailable("call aborted", signal.reason);
    try {
      for (;;) {
        let s: Session;
        try {
          s = await this.session(signal);
        } catch (err) {
          throw err instanceof ReadmarkError ? err : abortErr();
        }
        let r;
        try {
          r = await s.roundTrip(body, signal, abortErr);
        } catch (err) {
          throw err instanceof ReadmarkError ? err : abortErr();
        }
        if (r.kind === "unsent") continue; // the session ended before the request left: wait for the next one
        if (r.kind === "lost") {
          if (retry && r.err.code === CodeUnavailable && !this.closing) continue;
          throw r.err;
        }
        if (r.frame.error) throw new ReadmarkError(r.frame.error.code, r.frame.error.desc);
        return r.frame;
      }
    } finally {
      done();
    }
  }

  // ---- checks against the login limits, so that an oversized call fails alone ----

  private checkBatch(what: string, n: number): void {
    const max = this.lastLimits.maxBatch;
    if (max > 0 && n > max) throw new ReadmarkError(CodeTooMany, `${n} ${what} is over the limit of ${max}`);
  }

  private checkMembers(n: number): void {
    const max = this.lastLimits.maxMembersPerCall;
    if (max > 0 && n > max) throw new ReadmarkError(CodeTooMany, `${n} users is over the limit of ${max} per call`);
  }

  // ---- groups ----

  /**
   * createGroup creates a group of the given type with the caller as owner
   * and memberIDs as the other initial members, and returns its ID (chosen by
   * the server when groupID is "").
   */
  async createGroup(
    groupType: GroupType,
    groupID: string,
    groupName: string,
    memberIDs: string[] = [],
    opts?: CallOptions,
  ): Promise<string> {
    const type = groupTypeOf(groupType);
    if (type === undefined) throw new ReadmarkError(CodeInvalidArgument, `unknown group type "${groupType}"`);
    this.checkMembers(memberIDs.length);
    const f = await this.call(
      { case: "createGroup", value: { type, groupId: groupID, name: groupName, memberIds: memberIDs } },
      opts,
      false,
    );
    return f.body.case === "createGroup" ? f.body.value.groupId : "";
  }

  /** inviteUserToGroup adds userIDs to the group. */
  async inviteUserToGroup(groupID: string, userIDs: string[], opts?: CallOptions): Promise<void> {
    this.checkMembers(userIDs.length);
    await this.call({ case: "invite", value: { groupId: groupID, userIds: userIDs } }, opts, false);
  }

  /** joinGroup makes the caller a member of the group (Work groups need an invitation). */
  async joinGroup(groupID: string, message = "", opts?: CallOptions): Promise<void> {
    await this.call({ case: "joinGroup", value: { groupId: groupID, message } }, opts, false);
  }

  /** quitGroup removes the caller from the group. */
  async quitGroup(groupID: string, opts?: CallOptions): Promise<void> {
    await this.call({ case: "quitGroup", value: { groupId: groupID } }, opts, false);
  }

  /** kickGroupMember removes userIDs from the group (owner only). */
  async kickGroupMember(groupID: string, userIDs: string[], reason = "", opts?: CallOptions): Promise<void> {
    this.checkMembers(userIDs.length);
    await this.call({ case: "kick", value: { groupId: groupID, userIds: userIDs, reason } }, opts, false);
  }

  // ---- messages ----

  /** createTextMessage returns a new text message to send with sendMessage. */
  createTextMessage(text: string): Message {
    return newMessage({ text, elemType: ElemText, sender: this.userID, isSelf: true, clientMsgID: randomID() });
  }

  /** createCustomMessage returns a new message carrying application data. */
  createCustomMessage(data: Uint8Array): Message {
    return newMessage({
      customData: data,
      elemType: ElemCustom,
      sender: this.userID,
      isSelf: true,
      clientMsgID: randomID(),
    });
  }

  /**
   * sendMessage sends msg to the user receiver or to the group groupID
   * (exactly one of them). On success msg is updated in place with what the
   * server assigned (msgID, seq, timestamp, ...) and a copy is returned.
   * A send cut off by a lost connection is sent again after the reconnection
   * with the same clientMsgID, so the server stores it once.
   */
  async sendMessage(msg: Message, opts: SendMessageOptions = {}): Promise<Message> {
    if (!msg) throw new ReadmarkError(CodeInvalidArgument, "no message");
    const receiver = opts.receiver ?? "";
    const groupID = opts.groupID ?? "";
    if ((receiver === "") === (groupID === "")) {
      throw new ReadmarkError(CodeInvalidArgument, "exactly one of receiver and groupID must be set");
    }
    const l = this.lastLimits;
    const textBytes = new TextEncoder().encode(msg.text).length;
    if (l.maxTextBytes > 0 && textBytes > l.maxTextBytes) {
      throw new ReadmarkError(CodeMessageTooLarge, `text of ${textBytes} bytes is over the limit of ${l.maxTextBytes}`);
    }
    const data = msg.customData ?? new Uint8Array(0);
    if (l.maxCustomDataBytes > 0 && data.length > l.maxCustomDataBytes) {
      throw new ReadmarkError(
        CodeMessageTooLarge,
        `custom data of ${data.length} bytes is over the limit of ${l.maxCustomDataBytes}`,
      );
    }
    const onlineUserOnly = opts.onlineUserOnly ?? false;
    if (!msg.clientMsgID) msg.clientMsgID = randomID();
    const k = convKey(receiver, groupID);
    this.delivery.sendBegin(k);
    let pm: pb.Message | undefined;
    try {
      const f = await this.call(
        {
          case: "sendMessage",
          value: {
            receiver,
            groupId: groupID,
            elemType: msg.elemType as number as pb.ElemType,
            text: msg.text,
            customData: data,
            needReadReceipt: msg.needReadReceipt,
            priority: (opts.priority ?? 0) as number as pb.Priority,
            onlineUserOnly,
            clientMsgId: msg.clientMsgID,
          },
        },
        opts,
        !onlineUserOnly, // stored sends are idempotent by clientMsgID; relayed ones are not
      );
      pm = f.body.case === "sendMessage" ? f.body.value.message : undefined;
    } finally {
      this.delivery.sendEnd(k, pm);
    }
    if (!pm) throw new ReadmarkError(CodeInternal, "send_message response without message");
    const out = messageFromPB(pm, this.userID);
    if (out.groupID === "" && out.userID === "") out.userID = receiver;
    Object.assign(msg, {
      msgID: out.msgID,
      seq: out.seq,
      sender: out.sender,
      userID: out.userID,
      groupID: out.groupID,
      timestamp: out.timestamp,
      isSelf: out.isSelf,
      needReadReceipt: out.needReadReceipt,
      priority: out.priority,
      onlineUserOnly: out.onlineUserOnly,
    });
    return { ...msg };
  }

  /** getGroupHistoryMessageList returns up to count messages of the group, newest first, older than lastMsg (none = from the newest). */
  getGroupHistoryMessageList(groupID: string, count: number, lastMsg?: Message, opts?: CallOptions): Promise<Message[]> {
    return this.history({ groupId: groupID }, count, lastMsg, opts);
  }

  /** getC2CHistoryMessageList returns up to count messages exchanged with userID, newest first, older than lastMsg (none = from the newest). */
  getC2CHistoryMessageList(userID: string, count: number, lastMsg?: Message, opts?: CallOptions): Promise<Message[]> {
    return this.history({ peerId: userID }, count, lastMsg, opts);
  }

  private async history(
    conversation: { groupId?: string; peerId?: string },
    count: number,
    lastMsg: Message | undefined,
    opts: CallOptions | undefined,
  ): Promise<Message[]> {
    checkCount(count);
    this.checkBatch("messages per page", count);
    const f = await this.call(
      { case: "history", value: { conversation, count, beforeSeq: BigInt(lastMsg?.seq ?? 0) } },
      opts,
      true,
    );
    const ms = f.body.case === "history" ? f.body.value.messages : [];
    return ms.map((m) => messageFromPB(m, this.userID));
  }

  // ---- read receipts ----

  /**
   * sendMessageReadReceipts tells the senders of msgs (received messages
   * with needReadReceipt, all of one conversation) that this user has read
   * them.
   */
  async sendMessageReadReceipts(msgs: Message[], opts?: CallOptions): Promise<void> {
    this.checkBatch("messages", msgs.length);
    await this.call({ case: "sendReceipts", value: { messages: msgs.map(refOf) } }, opts, true);
  }

  /** getMessageReadReceipts returns the read state of messages this user sent, in the order of msgs. */
  async getMessageReadReceipts(msgs: Message[], opts?: CallOptions): Promise<MessageReceipt[]> {
    this.checkBatch("messages", msgs.length);
    const f = await this.call({ case: "getReceipts", value: { messages: msgs.map(refOf) } }, opts, true);
    return f.body.case === "getReceipts" ? f.body.value.receipts.map(receiptFromPB) : [];
  }

  /**
   * getGroupMessageReadMemberList returns one page of the members who read
   * (ReadMembersFilterRead) or have not read (ReadMembersFilterUnread) a
   * group message this user sent. Start with nextSeq 0 and pass the returned
   * nextSeq until isFinished.
   */
  async getGroupMessageReadMemberList(
    msg: Message,
    filter: GroupMessageReadMembersFilter,
    nextSeq: number,
    count: number,
    opts?: CallOptions,
  ): Promise<GroupMessageReadMemberList> {
    if (!msg) throw new ReadmarkError(CodeInvalidArgument, "no message");
    checkCount(count);
    this.checkBatch("members per page", count);
    const f = await this.call(
      {
        case: "readMembers",
        value: { message: refOf(msg), filter: filter as number as pb.ReadMembersFilter, nextSeq: BigInt(nextSeq), count },
      },
      opts,
      true,
    );
    if (f.body.case !== "readMembers") throw new ReadmarkError(CodeInternal, "unexpected read_members response");
    const rm = f.body.value;
    return { members: rm.members.map(memberFromPB), nextSeq: Number(rm.nextSeq), isFinished: rm.isFinished };
  }

  /** markC2CMessageAsRead marks the whole C2C conversation with userID read up to now; the peer gets onRecvC2CReadReceipt. */
  async markC2CMessageAsRead(userID: string, opts?: CallOptions): Promise<void> {
    await this.call({ case: "markC2cRead", value: { peerId: userID } }, opts, true);
  }

  /**
   * setSelfInfo sets this user's nickname and avatar URL, which others see
   * in getGroupMessageReadMemberList. Empty values clear them.
   */
  async setSelfInfo(nickName: string, faceURL: string, opts?: CallOptions): Promise<void> {
    await this.call({ case: "setProfile", value: { nickName, faceUrl: faceURL } }, opts, true);
  }

  /** ping asks the server for its time (Unix ms); it checks the connection end to end. */
  async ping(opts?: CallOptions): Promise<number> {
    const f = await this.call({ case: "ping", value: {} }, opts, true);
    return f.body.case === "ping" ? Number(f.body.value.serverTimeMs) : 0;
  }

  // ---- listeners ----

  /**
   * addAdvancedMsgListener registers l; adding the same listener twice has no
   * effect. Events are held until the first listener of any kind is added,
   * so a listener added right after dial sees the messages synced at login.
   */
  addAdvancedMsgListener(l: AdvancedMsgListener): void {
    this.events.add(this.events.advanced, l);
  }

  /** removeAdvancedMsgListener unregisters l; it gets no event after the call. */
  removeAdvancedMsgListener(l: AdvancedMsgListener): void {
    this.events.remove(this.events.advanced, l);
  }

  /** addGroupListener registers l for group membership events. */
  addGroupListener(l: GroupListener): void {
    this.events.add(this.events.group, l);
  }

  /** removeGroupListener unregisters l. */
  removeGroupListener(l: GroupListener): void {
    this.events.remove(this.events.group, l);
  }

  /** addConnListener registers l for connection state changes. */
  addConnListener(l: ConnListener): void {
    this.events.add(this.events.conn, l);
  }

  /** removeConnListener unregisters l. */
  removeConnListener(l: ConnListener): void {
    this.events.remove(this.events.conn, l);
  }

  private addListenerAny(l: AdvancedMsgListener & GroupListener & ConnListener): void {
    if (l.onRecvNewMessage || l.onRecvMessageReadReceipts || l.onRecvC2CReadReceipt || l.onRecvSelfReadReceipts) {
      this.addAdvancedMsgListener(l);
    }
    if (l.onGroupEvent) this.addGroupListener(l);
    if (l.onConnected || l.onDisconnected || l.onReconnecting) this.addConnListener(l);
  }
}

/**
 * syncRequest asks for the page after cursors, without taking them as
 * acknowledgements (no_ack). A server that predates no_ack takes them as
 * acknowledgements still: there, what is delivered but not handed when the
 * client ends is not synced to this device again.
 */
function syncRequest(cursors: pb.SyncCursor[]): { cursors: pb.SyncCursor[]; limit: number; noAck: boolean } {
  return { cursors, limit: syncPageSize, noAck: true };
}

/**
 * ack sends cursors on s in AckRequests of at most maxCursorsPerFrame:
 * "ok", "lost" (the session ended or signal aborted) or "refused" (the
 * server answered with an error). With noReply the server answers none of
 * them: "ok" once they are written, and a failure is only the server's to
 * see. Without, the answers are awaited, so the server has applied them.
 */
async function ack(
  s: Session,
  cursors: pb.SyncCursor[],
  signal: AbortSignal | undefined,
  noReply: boolean,
): Promise<"ok" | "lost" | "refused"> {
  for (let i = 0; i < cursors.length; i += maxCursorsPerFrame) {
    const body = { case: "ack", value: { cursors: cursors.slice(i, i + maxCursorsPerFrame), noReply } } as const;
    let r;
    try {
      if (noReply) {
        if (s.send(body) === "unsent") return "lost";
        continue;
      }
      r = await s.roundTrip(body, signal);
    } catch {
      return "lost"; // aborted, or over the frame limit
    }
    if (r.kind !== "ok") return "lost";
    if (r.frame.error) return "refused";
  }
  return "ok";
}

/** endpoint turns a server's base address into the WebSocket URL. */
function endpoint(serverURL: string): string {
  let u: URL;
  try {
    u = new URL(serverURL);
  } catch {
    throw new ReadmarkError(CodeInvalidArgument, `bad server URL "${serverURL}"`);
  }
  const schemes: Record<string, string> = { "ws:": "ws:", "wss:": "wss:", "http:": "ws:", "https:": "wss:" };
  const scheme = schemes[u.protocol];
  if (!scheme) {
    throw new ReadmarkError(CodeInvalidArgument, `bad server URL "${serverURL}": scheme must be ws, wss, http or https`);
  }
  return `${scheme}//${u.host}${u.pathname.replace(/\/+$/, "")}${endpointPath}${u.search}`;
}

function checkCount(count: number): void {
  if (!Number.isInteger(count) || count < 0 || count > 0xffffffff) {
    throw new ReadmarkError(CodeInvalidArgument, `count ${count} out of range`);
  }
}

/** callSignal combines the call's signal with its timeout; done releases the timer. */
function callSignal(opts: CallOptions | undefined, defaultTimeout: number): { signal: AbortSignal; done: () => void } {
  const ctl = new AbortController();
  const timeout = opts?.timeout ?? defaultTimeout;
  let timer: ReturnType<typeof setTimeout> | undefined;
  if (timeout > 0) {
    timer = setTimeout(() => ctl.abort(unavailable(`call timed out after ${timeout} ms`)), timeout);
  }
  const outer = opts?.signal;
  const onAbort = (): void => ctl.abort(outer?.reason);
  if (outer?.aborted) onAbort();
  else outer?.addEventListener("abort", onAbort, { once: true });
  return {
    signal: ctl.signal,
    done: () => {
      clearTimeout(timer);
      outer?.removeEventListener("abort", onAbort);
    },
  };
}

/** jitter returns d randomized to [d/2, d). */
function jitter(d: number): number {
  return d <= 1 ? d : d / 2 + Math.random() * (d / 2);
}

/** sleep waits ms; false if signal aborted first. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve(false);
      return;
    }
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      resolve(false);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function shuffle<T>(a: T[]): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** randomID returns 32 random hex digits (valid as client_msg_id and device_id). */
function randomID(): string {
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** defaultDeviceID keeps one random device ID per user in localStorage where there is one. */
function defaultDeviceID(userID: string): string {
  const key = `readmark.deviceID:${userID}`;
  try {
    const ls = (globalThis as { localStorage?: Storage }).localStorage;
    if (ls) {
      let id = ls.getItem(key);
      if (!id) {
        id = "web-" + randomID();
        ls.setItem(key, id);
      }
      return id;
    }
  } catch {
    // storage disabled (private mode, sandboxed frame): fall through
  }
  return "js-" + randomID();
}
