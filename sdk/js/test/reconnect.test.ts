// Connection behaviour against real readmarkd processes: restart, calls
// waiting for the reconnection, sync after it, several server addresses.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { fromBinary } from "@bufbuild/protobuf";
import WebSocket, { WebSocketServer } from "ws";
import * as pb from "../src/gen/readmark_pb.js";
import { join } from "node:path";
import { Server, WS, waitFor, id } from "./harness.js";
import { Client, CodeUnavailable, type Message, ReadmarkError } from "../src/index.js";

let srv: Server;
before(async () => {
  srv = await Server.start();
});
after(async () => {
  await srv.close();
});

/** freePort returns a port nothing listens on. */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const l = createServer().listen(0, "127.0.0.1", () => {
      const port = (l.address() as { port: number }).port;
      l.close(() => resolve(port));
    });
  });
}

test("server restart: the client reconnects, waiting calls complete, missed messages arrive once and in order", async () => {
  const bobName = id("bob");
  const states: string[] = [];
  const got: Message[] = [];
  const bob = await srv.dial(bobName, {
    backoffMin: 300,
    backoffMax: 600,
    listeners: [
      {
        onConnected: () => states.push("connected"),
        onDisconnected: () => states.push("disconnected"),
        onReconnecting: () => states.push("reconnecting"),
        onRecvNewMessage: (m) => got.push(m),
      },
    ],
  });
  let alice: Client | undefined;
  try {
    alice = await srv.dial(id("alice"));
    await alice.sendMessage(alice.createTextMessage("before"), { receiver: bobName });
    await waitFor("the first message", () => got.length === 1);
    await alice.close();

    await srv.stop();
    await waitFor("bob notices", () => states.includes("disconnected"));
    const waiting = bob.getC2CHistoryMessageList(alice.userID, 10, undefined, { timeout: 30000 });
    await assert.rejects(bob.ping({ timeout: 50 }), (e: unknown) => e instanceof ReadmarkError && e.code === CodeUnavailable);

    await srv.restart();
    alice = await srv.dial(alice.userID);
    for (let i = 1; i <= 3; i++) await alice.sendMessage(alice.createTextMessage(`after ${i}`), { receiver: bobName });
    const hist = await waiting; // sent while the server was down; answered after the reconnection
    assert.ok(hist.length >= 1);
    await waitFor("the messages sent after the restart", () => got.length === 4);
    await bob.ping();
    assert.deepEqual(got.map((m) => [m.text, m.seq]), [["before", 1], ["after 1", 2], ["after 2", 3], ["after 3", 4]]);
    // Failed attempts while the server was down repeat "reconnecting" and "disconnected".
    assert.deepEqual(states.slice(0, 3), ["connected", "disconnected", "reconnecting"]);
    assert.equal(states.at(-1), "connected");
    assert.equal(states.filter((s) => s === "connected").length, 2);
  } finally {
    await alice?.close();
    await bob.close();
  }
});

test("several server addresses: a dead one is skipped, and a lost connection moves to another", async () => {
  const secretFile = join(srv.dataDir, "secret");
  const a = await Server.start(["--secret-file", secretFile]);
  const b = await Server.start(["--secret-file", secretFile]);
  const dead = await freePort();
  try {
    const user = id("multi");
    const c = await Client.dial(`ws://127.0.0.1:${dead}, ${a.url},${b.url}`, user, a.token(user), { WebSocket: WS, backoffMin: 20, backoffMax: 200 });
    try {
      await c.ping();
      // Stop each server in turn: whichever the client was on, it continues on the other.
      await a.stop();
      await c.ping({ timeout: 20000 });
      await a.restart();
      await b.stop();
      await c.ping({ timeout: 20000 });
    } finally {
      await c.close();
    }
  } finally {
    await a.close();
    await b.close();
  }
});

/**
 * cuttingProxy relays WebSocket connections to srv; when cut is set, it
 * swallows the response to the next send_message and then drops the client's
 * connection: the send reached the server and was stored, but the client
 * never learns it.
 */
async function cuttingProxy(srv: Server) {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, handleProtocols: (ps) => [...ps][0] ?? false });
  await new Promise((r) => wss.once("listening", r));
  const state = { cut: false, cuts: 0 };
  wss.on("connection", (client) => {
    const up = new WebSocket(`${srv.url}/v1/ws`, client.protocol);
    const queue: WebSocket.RawData[] = [];
    let swallow = 0n;
    up.on("open", () => queue.splice(0).forEach((d) => up.send(d)));
    client.on("message", (d) => {
      const f = fromBinary(pb.ClientFrameSchema, new Uint8Array(d as Buffer));
      if (state.cut && f.body.case === "sendMessage") {
        state.cut = false;
        swallow = f.id;
      }
      if (up.readyState === WebSocket.OPEN) up.send(d);
      else queue.push(d);
    });
    up.on("message", (d) => {
      const f = fromBinary(pb.ServerFrameSchema, new Uint8Array(d as Buffer));
      if (swallow !== 0n && f.id === swallow) {
        state.cuts++;
        client.terminate();
        up.terminate();
        return;
      }
      client.send(d);
    });
    client.on("close", () => up.terminate());
    up.on("close", () => client.terminate());
    up.on("error", () => client.terminate());
  });
  return {
    url: `ws://127.0.0.1:${(wss.address() as { port: number }).port}`,
    state,
    close: () => {
      for (const c of wss.clients) c.terminate();
      return new Promise((r) => wss.close(r));
    },
  };
}

test("a send whose response is lost is sent again after the reconnection and stored once", async () => {
  const proxy = await cuttingProxy(srv);
  const [aliceName, bobName] = [id("alice"), id("bob")];
  const bob = await srv.dial(bobName);
  const got: Message[] = [];
  bob.addAdvancedMsgListener({ onRecvNewMessage: (m) => got.push(m) });
  const alice = await Client.dial(proxy.url, aliceName, srv.token(aliceName), { WebSocket: WS, backoffMin: 20, backoffMax: 100 });
  try {
    await alice.sendMessage(alice.createTextMessage("first"), { receiver: bobName });
    proxy.state.cut = true;
    const sent = await alice.sendMessage(alice.createTextMessage("cut off"), { receiver: bobName });
    assert.equal(proxy.state.cuts, 1, "the first attempt's response was swallowed");
    assert.equal(sent.seq, 2);
    await alice.sendMessage(alice.createTextMessage("after"), { receiver: bobName });
    await waitFor("bob gets three", () => got.length >= 3);
    await bob.ping();
    assert.deepEqual(got.map((m) => [m.text, m.seq]), [["first", 1], ["cut off", 2], ["after", 3]]);
    const hist = await bob.getC2CHistoryMessageList(aliceName, 10);
    assert.deepEqual(hist.map((m) => m.text), ["after", "cut off", "first"], "stored once");
  } finally {
    await alice.close();
    await bob.close();
    await proxy.close();
  }
});
