// An in-process fake server behind a fake WebSocket class, for unit tests of
// behaviour a real server cannot be made to show on demand (a silent
// connection, a connection cut right after a request).
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import * as pb from "../src/gen/readmark_pb.js";
import type { WebSocketConstructor, WebSocketLike } from "../src/index.js";

type ServerInit = MessageInitShape<typeof pb.ServerFrameSchema>;

/** FakeConn is one fake WebSocket connection, seen from the fake server. */
export class FakeConn implements WebSocketLike {
  binaryType = "blob";
  protocol = "";
  readyState = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: unknown) => void) | null = null;
  onclose: ((ev: unknown) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  readonly received: pb.ClientFrame[] = [];

  constructor(
    private readonly srv: FakeServer,
    protocols: string[],
  ) {
    // Every delay is an explicit 0: Node 20's mock timers never fire a
    // timer without one that is set from another while a longer one waits.
    setTimeout(() => {
      if (srv.silent) return; // a server that never answers the handshake
      this.protocol = protocols[0];
      this.readyState = 1;
      this.onopen?.({});
    }, 0);
  }

  send(data: Uint8Array | string): void {
    if (this.readyState !== 1) throw new Error("not open");
    const f = fromBinary(pb.ClientFrameSchema, data as Uint8Array);
    this.received.push(f);
    setTimeout(() => this.srv.handle(this, f), 0);
  }

  close(code = 1000): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    setTimeout(() => this.onclose?.({ code, reason: "" }), 0);
  }

  /** reply sends a server frame to the client. */
  reply(init: ServerInit): void {
    if (this.readyState !== 1) return;
    const b = toBinary(pb.ServerFrameSchema, create(pb.ServerFrameSchema, init));
    setTimeout(() => this.onmessage?.({ data: b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) }), 0);
  }

  /** drop cuts the connection as a network failure would. */
  drop(): void {
    this.close(1006);
  }
}

/**
 * FakeServer answers login, sync, ack and ping like readmarkd; onRequest
 * sees every other request (and may override those by returning true).
 */
export class FakeServer {
  readonly conns: FakeConn[] = [];
  heartbeatSeconds = 30;
  /** New connections never open. */
  silent = false;
  answerPings = true;
  onRequest: (conn: FakeConn, f: pb.ClientFrame) => boolean = () => false;
  /** loginSync answers a login's sync request (unset: ignored, as by a server without it); it may push before the login response. */
  loginSync: ((conn: FakeConn, r: pb.SyncRequest) => MessageInitShape<typeof pb.SyncResponseSchema>) | undefined;

  readonly WebSocket: WebSocketConstructor;

  constructor() {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const srv = this;
    this.WebSocket = class extends FakeConn {
      constructor(_url: string, protocols?: string | string[]) {
        super(srv, typeof protocols === "string" ? [protocols] : (protocols ?? []));
        srv.conns.push(this);
      }
    };
  }

  handle(conn: FakeConn, f: pb.ClientFrame): void {
    if (this.onRequest(conn, f)) return;
    const id = f.id;
    switch (f.body.case) {
      case "login": {
        const req = f.body.value.sync;
        const sync = req && this.loginSync ? this.loginSync(conn, req) : undefined;
        conn.reply({
          id,
          body: {
            case: "login",
            value: {
              sessionId: `s${this.conns.length}`,
              protocolVersion: 1,
              limits: { maxFrameBytes: 65536, maxBatch: 100, heartbeatSeconds: this.heartbeatSeconds },
              sync,
            },
          },
        });
        return;
      }
      case "sync":
        conn.reply({ id, body: { case: "sync", value: {} } });
        return;
      case "ack":
        if (!f.body.value.noReply) conn.reply({ id, body: { case: "ok", value: {} } }); // as readmarkd: no answer at all
        return;
      case "ping":
        if (this.answerPings) conn.reply({ id, body: { case: "ping", value: { serverTimeMs: BigInt(Date.now()) } } });
        return;
      default:
        conn.reply({ id, body: { case: "ok", value: {} } });
    }
  }

  /** requests lists the request bodies of a kind received on all connections. */
  requests<K extends NonNullable<pb.ClientFrame["body"]["case"]>>(kind: K): pb.ClientFrame[] {
    return this.conns.flatMap((c) => c.received.filter((f) => f.body.case === kind));
  }
}
