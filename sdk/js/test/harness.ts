// Test harness: a real readmarkd process on 127.0.0.1 (built from
// cmd/readmarkd by `npm test`), tokens minted like usersig.Gen, and helpers
// that wait on conditions instead of sleeping.
import { spawn, type ChildProcess } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before } from "node:test";
import WebSocket from "ws";
import { Client, type ClientOptions, type WebSocketConstructor } from "../src/index.js";

/** The readmarkd binary: $READMARKD, else the one `npm test` builds. */
export const readmarkdPath =
  process.env.READMARKD ?? fileURLToPath(new URL("../../build-test/readmarkd", import.meta.url));

export const WS = WebSocket as unknown as WebSocketConstructor;

/** Server is one readmarkd process with its own data directory. */
export class Server {
  private proc: ChildProcess | undefined;
  addr = "";
  readonly dataDir: string;
  private secret = Buffer.alloc(0);

  private constructor(private readonly extraArgs: string[]) {
    this.dataDir = mkdtempSync(join(tmpdir(), "readmark-js-"));
  }

  static async start(extraArgs: string[] = []): Promise<Server> {
    const s = new Server(extraArgs);
    await s.launch("127.0.0.1:0");
    return s;
  }

  private get secretFile(): string {
    const i = this.extraArgs.indexOf("--secret-file");
    return i >= 0 ? this.extraArgs[i + 1] : join(this.dataDir, "secret");
  }

  get url(): string {
    return `ws://${this.addr}`;
  }

  private launch(listen: string): Promise<void> {
    const proc = spawn(readmarkdPath, ["--listen", listen, "--data", this.dataDir, "--log-level", "warn", ...this.extraArgs], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    this.proc = proc;
    return new Promise((resolve, reject) => {
      let out = "";
      const onData = (b: Buffer): void => {
        out += b.toString();
        const m = /listening on (\S+)/.exec(out);
        if (m) {
          proc.stdout!.off("data", onData);
          proc.stdout!.resume(); // keep draining
          this.addr = m[1];
          this.secret = Buffer.from(readFileSync(this.secretFile, "utf8").trim());
          resolve();
        }
      };
      proc.stdout!.on("data", onData);
      proc.once("exit", (code) => reject(new Error(`readmarkd exited (${code}) before listening: ${out}`)));
    });
  }

  /** stop ends the process (SIGTERM: graceful shutdown) and waits for it. */
  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once("exit", r));
    p.kill("SIGTERM");
    await exited;
  }

  /** restart stops the server and starts it again on the same address and data. */
  async restart(): Promise<void> {
    await this.stop();
    await this.launch(this.addr);
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** metric returns the value of a series of the server's /metrics (0 if absent), e.g. `readmark_requests_total{code="OK",type="sync"}`. */
  async metric(series: string): Promise<number> {
    const text = await (await fetch(`http://${this.addr}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith(series + " "));
    return line ? Number(line.slice(series.length + 1)) : 0;
  }

  /** token mints a token for userID as usersig.Gen does. */
  token(userID: string, ttlSeconds = 3600): string {
    const payload = JSON.stringify({ v: 1, uid: userID, exp: Math.floor(Date.now() / 1000) + ttlSeconds });
    const body = Buffer.from(payload).toString("base64url");
    const sig = createHmac("sha256", this.secret).update(body).digest("base64url");
    return `${body}.${sig}`;
  }

  dial(userID: string, options: ClientOptions = {}): Promise<Client> {
    return Client.dial(this.url, userID, this.token(userID), { WebSocket: WS, backoffMin: 20, backoffMax: 200, ...options });
  }

  /** setReceiptGroupTypes sets the admin setting read_receipt_group_types. */
  async setReceiptGroupTypes(types: string[]): Promise<void> {
    const r = await fetch(`http://${this.addr}/v1/admin/settings`, {
      method: "PUT",
      headers: { Authorization: `Bearer ${this.token("administrator")}` },
      body: JSON.stringify({ read_receipt_group_types: types }),
    });
    if (!r.ok) throw new Error(`PUT settings: ${r.status} ${await r.text()}`);
  }
}

/** waitFor polls cond until it holds or the deadline passes (no fixed sleeps: the machine is shared). */
export async function waitFor(what: string, cond: () => boolean, timeoutMs = 20000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

let uniq = 0;
/** id returns a unique ID with prefix, so tests sharing a server do not collide. */
export function id(prefix: string): string {
  return `${prefix}${process.pid}x${++uniq}`;
}

/**
 * useServer starts one server for the test file (before its tests) and
 * closes it, and every client dialed through the fixture, after them.
 */
export function useServer(): { readonly srv: Server; dial(userID: string, options?: ClientOptions): Promise<Client> } {
  let srv: Server | undefined;
  const clients: Client[] = [];
  before(async () => {
    srv = await Server.start();
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await srv?.close();
  });
  return {
    get srv() {
      return srv!;
    },
    async dial(userID, options) {
      const c = await srv!.dial(userID, options);
      clients.push(c);
      return c;
    },
  };
}
