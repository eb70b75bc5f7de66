// One logged-in WebSocket connection: login, request/response matching,
// heartbeat. The Client owns the sessions and the reconnection loop.
import { create, fromBinary, fromJsonString, toBinary, toJsonString, type MessageInitShape } from "@bufbuild/protobuf";
import * as pb from "./gen/readmark_pb.js";
import { CodeInvalidArgument, CodeProtocol } from "./codes.js";
import { ReadmarkError, unavailable } from "./errors.js";

/** The subset of the WebSocket API the SDK uses (browsers' WebSocket and the ws package's both have it). */
export interface WebSocketLike {
  binaryType: string;
  readonly protocol: string;
  readonly readyState: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onopen: ((ev: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onmessage: ((ev: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onclose: ((ev: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onerror: ((ev: any) => void) | null;
  send(data: Uint8Array | string): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket class: globalThis.WebSocket in browsers, the ws package's in Node. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export type RequestBody = MessageInitShape<typeof pb.ClientFrameSchema>["body"];

/**
 * RoundTrip is the outcome of a request on one session: the response frame
 * (whose error, if any, the caller checks), "unsent" if the session had ended
 * before the request left, or "lost" if it ended before the answer came.
 */
export type RoundTrip =
  | { kind: "ok"; frame: pb.ServerFrame }
  | { kind: "unsent" }
  | { kind: "lost"; err: ReadmarkError };

export const subprotocolProto = "readmark.v1.proto";
export const subprotocolJSON = "readmark.v1.json";
const protocolVersion = 1;
const wsOpen = 1;

interface Pending {
  resolve: (r: RoundTrip) => void;
}

/** SessionHooks connect a session to its client. */
export interface SessionHooks {
  nextID(): bigint;
  /** A push (id 0, other than kickoff). */
  onPush(f: pb.ServerFrame): void;
  /** The session ended: err says why. Called once. */
  onEnd(s: Session, err: Error): void;
  log(msg: string, err?: unknown): void;
  /** The acknowledgements due, to ride on a request (ClientFrame.acked). */
  acksDue(): pb.SyncCursor[];
  /** The acknowledgements rode on a frame the WebSocket took. */
  acksSent(cursors: pb.SyncCursor[]): void;
}

export interface LoginParams {
  url: string;
  userID: string;
  token: string;
  sdk: string;
  deviceID: string;
  json: boolean;
  timeoutMs: number;
  WebSocket: WebSocketConstructor;
  /** Aborting it (Client.close) fails the dial at once. */
  signal: AbortSignal;
  /** The first sync page's request, to ride on the login (its page comes as login.sync). */
  sync: pb.SyncRequest | undefined;
}

/**
 * Session is one WebSocket connection, logged in. It matches responses to
 * requests by id, fails the requests in flight when it ends, and pings the
 * server after half the heartbeat interval of silence (dropping the
 * connection if the ping is not answered within the interval).
 */
export class Session {
  readonly login: pb.LoginResponse;
  ended = false;
  endErr: Error | undefined;
  /** Resolves when the session has ended, with the reason. */
  readonly done: Promise<Error>;
  /** Resolves when the socket is closed (or a close was forced). */
  private readonly socketClosed: Promise<void>;
  private resolveDone!: (err: Error) => void;
  private resolveClosed!: () => void;
  private readonly pending = new Map<bigint, Pending>();
  private lastWrite = Date.now();
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  private pinging = false;

  private constructor(
    private readonly ws: WebSocketLike,
    private readonly json: boolean,
    login: pb.LoginResponse,
    private readonly hooks: SessionHooks,
  ) {
    this.login = login;
    this.done = new Promise((r) => (this.resolveDone = r));
    this.socketClosed = new Promise((r) => (this.resolveClosed = r));
  }

  /**
   * open dials p.url, logs in and returns the session. Frames that arrive
   * before the login response are handed to hooks.onPush once the session
   * exists. A refused login rejects with the server's ReadmarkError.
   */
  static open(p: LoginParams, hooks: SessionHooks): Promise<Session> {
    return new Promise((resolve, reject) => {
      const sp = p.json ? subprotocolJSON : subprotocolProto;
      let ws: WebSocketLike;
      try {
        ws = new p.WebSocket(p.url, [sp]);
      } catch (err) {
        reject(unavailable(`dial ${p.url}: ${String(err)}`, err));
        return;
      }
      ws.binaryType = "arraybuffer";
      const early: pb.ServerFrame[] = [];
      const loginID = hooks.nextID();
      let settled = false;
      const onAbort = (): void => fail(unavailable("client closed"));
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        p.signal.removeEventListener("abort", onAbort);
        ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
        forceClose(ws);
        reject(err);
      };
      const timer = setTimeout(() => fail(unavailable(`login to ${p.url} timed out`)), p.timeoutMs);
      if (p.signal.aborted) {
        onAbort();
        return;
      }
      p.signal.addEventListener("abort", onAbort, { once: true });
      // onclose follows an error; keep what the error says (with ws in Node,
      // e.g. "Unexpected server response: 503" for a server at its
      // connection limit; browsers do not tell).
      let cause = "";
      ws.onerror = (ev: { message?: string; error?: { message?: string } }) => {
        cause = ev?.message ?? ev?.error?.message ?? "";
      };
      ws.onclose = (ev: { code?: number; reason?: string }) =>
        fail(unavailable(`dial ${p.url}: connection closed (${ev?.code ?? "?"}${ev?.reason ? " " + ev.reason : ""})${cause ? ": " + cause : ""}`));
      ws.onopen = () => {
        if (ws.protocol !== sp) {
          fail(new ReadmarkError(CodeProtocol, `server did not accept subprotocol ${sp}`));
          return;
        }
        const login = create(pb.ClientFrameSchema, {
          id: loginID,
          body: {
            case: "login",
            value: { protocolVersion, userId: p.userID, token: p.token, sdk: p.sdk, deviceId: p.deviceID, sync: p.sync },
          },
        });
        ws.send(encode(login, p.json));
      };
      ws.onmessage = (ev: { data: unknown }) => {
        let f: pb.ServerFrame;
        try {
          f = decode(ev.data, p.json);
        } catch (err) {
          fail(new ReadmarkError(CodeProtocol, `bad frame from server: ${String(err)}`));
          return;
        }
        if (f.id !== loginID) {
          if (f.id === 0n) early.push(f);
          return;
        }
        if (f.error) {
          fail(new ReadmarkError(f.error.code, f.error.desc));
          return;
        }
        if (f.body.case !== "login") {
          fail(new ReadmarkError(CodeProtocol, "unexpected login response"));
          return;
        }
        settled = true;
        clearTimeout(timer);
        p.signal.removeEventListener("abort", onAbort);
        const s = new Session(ws, p.json, f.body.value, hooks);
        s.start();
        resolve(s);
        for (const e of early) s.handle(e);
      };
    });
  }

  private start(): void {
    this.ws.onmessage = (ev: { data: unknown }) => {
      let f: pb.ServerFrame;
      try {
        f = decode(ev.data, this.json);
      } catch (err) {
        this.hooks.log("bad frame from server", err);
        this.end(new ReadmarkError(CodeProtocol, `bad frame from server: ${String(err)}`), false);
        return;
      }
      this.handle(f);
    };
    this.ws.onclose = (ev: { code?: number; reason?: string }) => {
      this.resolveClosed();
      this.end(unavailable(`connection closed (${ev?.code ?? "?"}${ev?.reason ? " " + ev.reason : ""})`), false);
    };
    this.ws.onerror = () => {}; // onclose follows
    const hb = (this.login.limits?.heartbeatSeconds ?? 0) * 1000 || 30000;
    this.lastWrite = Date.now();
    this.heartbeatTimer = setInterval(() => this.heartbeat(hb), Math.max(hb / 4, 10));
  }

  private handle(f: pb.ServerFrame): void {
    if (this.ended) return;
    if (f.id !== 0n) {
      const p = this.pending.get(f.id);
      this.pending.delete(f.id);
      p?.resolve({ kind: "ok", frame: f });
      return;
    }
    if (f.body.case === "kickoff") {
      const r = f.body.value.reason;
      const err = r ? new ReadmarkError(r.code, r.desc) : unavailable("kicked off");
      this.hooks.log("kicked off", err);
      this.end(err, false);
      return;
    }
    this.hooks.onPush(f);
  }

  /**
   * roundTrip sends a request and waits for its response. A frame larger
   * than the server's max_frame_bytes fails alone with CodeInvalidArgument;
   * an abort of signal rejects with its error.
   */
  roundTrip(body: RequestBody, signal?: AbortSignal, abortErr?: () => Error): Promise<RoundTrip> {
    if (this.ended) return Promise.resolve({ kind: "unsent" });
    let f;
    try {
      f = this.frame(body);
    } catch (err) {
      return Promise.reject(err);
    }
    const { id, data, acked } = f;
    if (this.ws.readyState !== wsOpen) return Promise.resolve({ kind: "unsent" });
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        this.pending.delete(id);
        reject(abortErr ? abortErr() : signal?.reason);
      };
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      this.pending.set(id, {
        resolve: (r) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(r);
        },
      });
      if (!this.write(data, acked)) {
        this.pending.delete(id);
        signal?.removeEventListener("abort", onAbort);
        resolve({ kind: "unsent" });
      }
    });
  }

  /**
   * send writes a request the server does not answer (AckRequest.no_reply)
   * and waits for nothing: "sent" once the WebSocket took it, "unsent" if
   * the session had ended. The frame limit applies as in roundTrip.
   */
  send(body: RequestBody): "sent" | "unsent" {
    if (this.ended) return "unsent";
    const { data, acked } = this.frame(body);
    if (this.ws.readyState !== wsOpen) return "unsent";
    return this.write(data, acked) ? "sent" : "unsent";
  }

  /**
   * frame encodes body with a new request id, within the server's frame
   * limit. Unless body is an AckRequest itself, the acknowledgements due
   * ride on it (acked), sparing the server an AckRequest frame; if the frame
   * would be over the limit with them, it goes alone (the ack timer sends
   * them).
   */
  private frame(body: RequestBody): { id: bigint; data: Uint8Array | string; acked: pb.SyncCursor[] } {
    const id = this.hooks.nextID();
    const max = this.login.limits?.maxFrameBytes ?? 0;
    const encodeWith = (acked: pb.SyncCursor[]) => {
      const data = encode(create(pb.ClientFrameSchema, { id, acked, body }), this.json);
      return { id, data, acked, size: typeof data === "string" ? new TextEncoder().encode(data).length : data.length };
    };
    let f = encodeWith(body?.case === "ack" ? [] : this.hooks.acksDue());
    if (max > 0 && f.size > max && f.acked.length > 0) f = encodeWith([]);
    if (max > 0 && f.size > max) {
      throw new ReadmarkError(CodeInvalidArgument, `request of ${f.size} bytes is over the server's frame limit of ${max}`);
    }
    return f;
  }

  /** write sends data on the socket, counting the acknowledgements riding on it as sent; false (the session ended) if it threw. */
  private write(data: Uint8Array | string, acked: pb.SyncCursor[]): boolean {
    try {
      this.ws.send(data);
    } catch (err) {
      this.end(unavailable(`write: ${String(err)}`, err), false);
      return false;
    }
    this.lastWrite = Date.now();
    if (acked.length > 0) this.hooks.acksSent(acked);
    return true;
  }

  private heartbeat(hb: number): void {
    if (this.ended || this.pinging || Date.now() - this.lastWrite < hb / 2) return;
    this.pinging = true;
    const timeout = AbortSignal.timeout(hb);
    this.roundTrip({ case: "ping", value: {} }, timeout, () => unavailable("heartbeat timeout")).then(
      () => {
        this.pinging = false; // a server error still proves the connection alive
      },
      (err) => {
        this.pinging = false;
        this.end(err instanceof Error ? err : unavailable("heartbeat failed"), false);
      },
    );
  }

  /**
   * end ends the session with err (first call wins): requests in flight
   * resolve as "lost", the heartbeat stops, the socket closes (gracefully:
   * with a close frame; else at once where the WebSocket class allows).
   */
  end(err: Error, graceful: boolean): void {
    if (this.ended) return;
    this.ended = true;
    this.endErr = err;
    clearInterval(this.heartbeatTimer);
    const lost = err instanceof ReadmarkError ? err : unavailable("connection lost", err);
    for (const p of this.pending.values()) p.resolve({ kind: "lost", err: lost });
    this.pending.clear();
    this.ws.onmessage = null;
    if (graceful) {
      try {
        this.ws.close(1000);
      } catch {
        // already closing
      }
    } else {
      forceClose(this.ws);
      this.resolveClosed();
    }
    this.hooks.onEnd(this, err);
    this.resolveDone(err);
  }

  /** closed resolves once the socket is closed, or after waitMs (then the close is forced). */
  async closed(waitMs: number): Promise<void> {
    let t: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((r) => (t = setTimeout(r, waitMs)));
    await Promise.race([this.socketClosed, timeout]);
    clearTimeout(t);
    forceClose(this.ws);
    this.ws.onclose = null;
  }
}

/** forceClose drops the connection without a closing handshake where the class allows it (ws: terminate). */
function forceClose(ws: WebSocketLike): void {
  try {
    const t = (ws as unknown as { terminate?: () => void }).terminate;
    if (typeof t === "function") t.call(ws);
    else ws.close();
  } catch {
    // already closed
  }
}

function encode(f: pb.ClientFrame, json: boolean): Uint8Array | string {
  return json ? toJsonString(pb.ClientFrameSchema, f) : toBinary(pb.ClientFrameSchema, f);
}

function decode(data: unknown, json: boolean): pb.ServerFrame {
  if (json) {
    const text = typeof data === "string" ? data : new TextDecoder().decode(bytesOf(data));
    return fromJsonString(pb.ServerFrameSchema, text, { ignoreUnknownFields: true });
  }
  return fromBinary(pb.ServerFrameSchema, bytesOf(data));
}

function bytesOf(data: unknown): Uint8Array {
  if (data instanceof Uint8Array) return data; // Node Buffer
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw new Error(`unexpected WebSocket message of type ${typeof data}`);
}
