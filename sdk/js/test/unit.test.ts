// Unit tests of the delivery rules, the event queue, and of connection
// behaviour driven by a fake server (heartbeat, retries after a lost connection).
import { type TestContext, test } from "node:test";
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import * as pb from "../src/gen/readmark_pb.js";
import { Delivery } from "../src/sync.js";
import { EventQueue } from "../src/listeners.js";
import { Client, CodePermissionDenied, CodeUnauthenticated, CodeUnavailable, type Message, ReadmarkError } from "../src/index.js";
import { type FakeConn, FakeServer } from "./fake.js";
import { waitFor } from "./harness.js";

function msg(seq: number, sender: string, group = "", text = `${sender}${group}${seq}`): pb.Message {
  return create(pb.MessageSchema, { seq: BigInt(seq), sender, receiver: group ? "" : "me", groupId: group, text });
}

/**
 * mockClock makes setTimeout and Date the test's, and returns settle: it
 * runs what is due now (the fake server's setTimeout(0)s) and lets the
 * promises it resolves run, while t.mock.timers.tick(ms) moves the clock.
 */
function mockClock(t: TestContext): () => Promise<void> {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: Date.now() });
  return async () => {
    for (let i = 0; i < 10; i++) {
      t.mock.timers.tick(0);
      await new Promise((r) => setImmediate(r));
    }
  };
}

function delivery() {
  const out: string[] = [];
  const own: string[] = [];
  const d = new Delivery("me", {
    emit: (m) => out.push(m.text),
    own: (k, seq) => own.push(`${k}#${seq}`),
  });
  return { d, out, own };
}

test("Delivery: sync pages, then buffered pushes; each stored message once", () => {
  const cases: Array<{ name: string; pages: pb.Message[][]; pushes: pb.Message[]; live: pb.Message[]; want: string[] }> = [
    {
      name: "pushes during the sync come after it, repeats dropped",
      pages: [[msg(1, "a"), msg(2, "a")], [msg(3, "a")]],
      pushes: [msg(3, "a"), msg(4, "a")],
      live: [msg(4, "a"), msg(5, "a")],
      want: ["a1", "a2", "a3", "a4", "a5"],
    },
    {
      name: "conversations are independent; online-only messages (seq 0) always delivered",
      pages: [[msg(1, "a"), msg(7, "x", "g")]],
      pushes: [msg(0, "a", "", "live-only"), msg(7, "x", "g"), msg(8, "x", "g")],
      live: [msg(0, "a", "", "live-only"), msg(2, "a")],
      want: ["a1", "xg7", "live-only", "xg8", "live-only", "a2"],
    },
    {
      name: "a C2C message I sent from another device is keyed by its receiver",
      pages: [],
      pushes: [create(pb.MessageSchema, { seq: 1n, sender: "me", receiver: "b", text: "mine1" })],
      live: [msg(1, "b"), msg(2, "b")],
      want: ["mine1", "b2"],
    },
  ];
  for (const c of cases) {
    const { d, out } = delivery();
    d.startSync();
    for (const p of c.pages.slice(0, 1)) d.syncPage(p);
    for (const m of c.pushes) d.push(m);
    for (const p of c.pages.slice(1)) d.syncPage(p);
    d.finishSync();
    for (const m of c.live) d.push(m);
    assert.deepEqual(out, c.want, c.name);
  }
});

test("Delivery: own sends are not reported, in or out of order; cursors and acknowledgements", () => {
  const { d, out, own } = delivery();
  d.push(msg(1, "b"));
  d.sentOwn(create(pb.MessageSchema, { seq: 2n, sender: "me", receiver: "b" }));
  d.sentOwn(create(pb.MessageSchema, { seq: 4n, sender: "me", receiver: "b" })); // 3 not seen yet
  d.push(create(pb.MessageSchema, { seq: 2n, sender: "me", receiver: "b", text: "echo2" }));
  d.push(msg(3, "b"));
  d.push(create(pb.MessageSchema, { seq: 4n, sender: "me", receiver: "b", text: "echo4" }));
  d.push(msg(5, "b"));
  assert.deepEqual(out, ["b1", "b3", "b5"]);
  assert.deepEqual(own, ["p:b#2", "p:b#4"]);
  assert.deepEqual(d.cursors().map((c) => [c.conversation?.peerId, c.seq]), [["b", 5n]]);

  assert.deepEqual(d.toAck(), []);
  d.handed("p:b", 3);
  d.handed("g:g", 9);
  d.handed("p:b", 2); // never backwards
  const acks = d.toAck();
  assert.deepEqual(acks.map((c) => [c.conversation?.peerId, c.conversation?.groupId, c.seq]), [["b", "", 3n], ["", "g", 9n]]);
  d.acked(acks);
  assert.deepEqual(d.toAck(), []);
  d.handed("p:b", 5);
  assert.deepEqual(d.toAck().map((c) => c.seq), [5n]);
});

test("EventQueue: held until the first listener, in order, a throwing callback does not stop the others", () => {
  const errs: unknown[] = [];
  const q = new EventQueue((e) => errs.push(e));
  const seen: string[] = [];
  q.push(() => seen.push("early"));
  assert.equal(seen.length, 0);
  const l = { onConnected: () => {} };
  q.add(q.conn, l);
  assert.deepEqual(seen, ["early"]);
  q.push(() => {
    q.push(() => seen.push("nested")); // runs after the current one
    seen.push("outer");
    throw new Error("boom");
  });
  q.push(() => seen.push("after"));
  assert.deepEqual(seen, ["early", "outer", "nested", "after"]);
  assert.equal((errs[0] as Error).message, "boom");
  q.add(q.conn, l);
  assert.equal(q.conn.length, 1, "adding twice has no effect");
  q.remove(q.conn, l);
  assert.equal(q.conn.length, 0);
  q.close();
  q.push(() => seen.push("closed"));
  assert.equal(seen.at(-1), "after");
});

test("heartbeat: a ping after half the interval of silence; no answer drops the connection and reconnects", async () => {
  const srv = new FakeServer();
  srv.heartbeatSeconds = 1;
  srv.answerPings = false;
  const events: string[] = [];
  const c = await Client.dial("ws://fake", "me", "t", {
    WebSocket: srv.WebSocket,
    backoffMin: 10,
    backoffMax: 20,
    listeners: [{ onDisconnected: (e) => events.push(`disconnected: ${e.message}`), onConnected: () => events.push("connected") }],
  });
  try {
    await waitFor("a reconnection after the heartbeat timeout", () => srv.conns.length >= 2, 10000);
    assert.ok(srv.requests("ping").length >= 1);
    assert.match(events.find((e) => e.startsWith("disconnected"))!, /heartbeat timeout/);
    srv.answerPings = true;
    await waitFor("connected again", () => events.filter((e) => e === "connected").length >= 2);
  } finally {
    await c.close();
  }
});

test("a lost connection: idempotent calls are sent again after the reconnection, others fail with CodeUnavailable", async () => {
  const srv = new FakeServer();
  let cutHistory = true;
  let cutSend = true;
  srv.onRequest = (conn, f) => {
    const b = f.body;
    if (b.case === "history" && cutHistory) {
      cutHistory = false;
      conn.drop();
      return true;
    }
    if (b.case === "sendMessage" && cutSend) {
      cutSend = false;
      conn.drop();
      return true;
    }
    if (b.case === "joinGroup") {
      conn.drop();
      return true;
    }
    if (b.case === "sendMessage") {
      const v = b.value;
      conn.reply({ id: f.id, body: { case: "sendMessage", value: { message: { msgId: "m1", seq: 1n, sender: "me", receiver: v.receiver, timeMs: 5n } } } });
      return true;
    }
    if (b.case === "history") {
      conn.reply({ id: f.id, body: { case: "history", value: { messages: [msg(1, "peer")] } } });
      return true;
    }
    return false;
  };
  const c = await Client.dial("ws://fake", "me", "t", { WebSocket: srv.WebSocket, backoffMin: 10, backoffMax: 20 });
  try {
    const h = await c.getC2CHistoryMessageList("peer", 10);
    assert.equal(h.length, 1);
    assert.equal(srv.requests("history").length, 2, "sent twice");

    const m = c.createTextMessage("once");
    const sent = await c.sendMessage(m, { receiver: "peer" });
    assert.equal(sent.msgID, "m1");
    const sends = srv.requests("sendMessage");
    assert.equal(sends.length, 2);
    const keys = sends.map((f) => (f.body.case === "sendMessage" ? f.body.value.clientMsgId : ""));
    assert.equal(keys[0], keys[1], "the retry carries the same client_msg_id");
    assert.match(keys[0], /^[0-9a-f]{32}$/);

    await assert.rejects(c.joinGroup("g"), (e: unknown) => e instanceof ReadmarkError && e.code === CodeUnavailable);
    assert.equal(srv.requests("joinGroup").length, 1, "not repeated");
  } finally {
    await c.close();
  }
});

test("sync after a reconnection with more cursors than fit in a frame: acknowledged in chunks first", async () => {
  const srv = new FakeServer();
  const c = await Client.dial("ws://fake", "me", "t", { WebSocket: srv.WebSocket, backoffMin: 10, backoffMax: 20 });
  try {
    const first = srv.conns[0];
    for (let i = 0; i < 300; i++) first.reply({ id: 0n, body: { case: "newMessage", value: msg(1, `peer${i}`) } });
    await c.ping(); // after the pushes
    first.drop();
    await waitFor("the sync on the second connection", () => srv.conns.length === 2 && srv.conns[1].received.some((f) => f.body.case === "sync"));
    const second = srv.conns[1].received;
    const login = second.find((f) => f.body.case === "login")!;
    assert.equal(login.body.case === "login" && login.body.value.sync, undefined, "no page asked of the login");
    const acks = second.filter((f) => f.body.case === "ack").map((f) => (f.body.case === "ack" ? f.body.value.cursors.length : 0));
    assert.deepEqual(acks, [256, 44]);
    const sync = second.find((f) => f.body.case === "sync")!;
    assert.equal(sync.body.case === "sync" && sync.body.value.cursors.length, 0);
    assert.ok(second.findIndex((f) => f.body.case === "sync") > second.findIndex((f) => f.body.case === "ack"), "acks before the sync");
  } finally {
    await c.close();
  }
});

test("acknowledgements: at most one a second by default", async (t) => {
  const srv = new FakeServer();
  const c = await Client.dial("ws://fake", "me", "t", { WebSocket: srv.WebSocket });
  const acks = () => srv.requests("ack").map((f) => (f.body.case === "ack" ? Number(f.body.value.cursors[0].seq) : 0));
  try {
    c.addAdvancedMsgListener({ onRecvNewMessage: () => {} });
    srv.conns[0].reply({ id: 0n, body: { case: "newMessage", value: msg(1, "peer") } });
    await waitFor("the first acknowledgement", () => acks().length === 1);

    // From here the clock is the test's: the fake server's setTimeout(0)s
    // run on tick(0), the acknowledgement's delay once the ticks add up.
    const settle = mockClock(t);
    srv.conns[0].reply({ id: 0n, body: { case: "newMessage", value: msg(2, "peer") } });
    await settle();
    t.mock.timers.tick(999);
    await settle();
    assert.deepEqual(acks(), [1], "no acknowledgement before the second is up");
    t.mock.timers.tick(1);
    await settle();
    assert.deepEqual(acks(), [1, 2]);
  } finally {
    t.mock.timers.reset();
    await c.close();
  }
});

test("acknowledgements: what was handed is acknowledged again on the next connection", async () => {
  const srv = new FakeServer();
  const c = await Client.dial("ws://fake", "me", "t", {
    WebSocket: srv.WebSocket,
    backoffMin: 10,
    backoffMax: 20,
    ackDelay: 10,
    listeners: [{ onRecvNewMessage: () => {} }],
  });
  // Whether in an AckRequest or riding on a request (the sync's).
  const acked = () =>
    srv
      .requests("ack")
      .concat(srv.requests("sync"))
      .flatMap((f) => (f.body.case === "ack" ? f.body.value.cursors : f.acked))
      .map((c) => `${c.conversation?.peerId}:${c.seq}`);
  try {
    srv.conns[0].reply({ id: 0n, body: { case: "newMessage", value: msg(1, "peer") } });
    await waitFor("the acknowledgement", () => acked().length === 1);
    srv.conns[0].drop();
    await waitFor("the acknowledgement again", () => acked().length === 2);
    assert.deepEqual(acked(), ["peer:1", "peer:1"]);
  } finally {
    await c.close();
  }
});

test("acknowledgements from the timer ask for no answer and wait for none", async () => {
  const srv = new FakeServer();
  srv.onRequest = (_conn, f) => f.body.case === "ack"; // answers no ack
  const c = await Client.dial("ws://fake", "me", "t", { WebSocket: srv.WebSocket, ackDelay: 1 });
  const acks = () =>
    srv.requests("ack").map((f) => (f.body.case === "ack" ? `${f.body.value.cursors[0].seq}${f.body.value.noReply ? " no_reply" : ""}` : ""));
  try {
    c.addAdvancedMsgListener({ onRecvNewMessage: () => {} });
    srv.conns[0].reply({ id: 0n, body: { case: "newMessage", value: msg(1, "peer") } });
    await waitFor("the first acknowledgement", () => acks().length === 1);
    srv.conns[0].reply({ id: 0n, body: { case: "newMessage", value: msg(2, "peer") } });
    await waitFor("the second acknowledgement", () => acks().length === 2);
  } finally {
    await c.close();
  }
  // Written counts as acknowledged: close had nothing left to send.
  assert.deepEqual(acks(), ["1 no_reply", "2 no_reply"]);
});

test("acknowledgements ride on the next request; the timer sends only what none carried", async (t) => {
  // big is a join message that makes the frame fit the fake's 64 KiB limit
  // just alone (its id takes at most 3 bytes), not with an acknowledgement.
  const joinSize = (n: number) =>
    toBinary(pb.ClientFrameSchema, create(pb.ClientFrameSchema, { id: 1n << 20n, body: { case: "joinGroup", value: { groupId: "g", message: "x".repeat(n) } } })).length;
  let n = 65536 - joinSize(0);
  while (joinSize(n) > 65536) n--;
  const big = "x".repeat(n);
  const cursors = (cs: pb.SyncCursor[]) => cs.map((c) => `${c.conversation?.peerId}:${c.seq}`).join(" ");
  const cases = [
    { name: "mark read", request: (c: Client) => c.markC2CMessageAsRead("peer"), kind: "markC2cRead", rides: true },
    { name: "join", request: (c: Client) => c.joinGroup("g"), kind: "joinGroup", rides: true },
    { name: "join, too large with them", request: (c: Client) => c.joinGroup("g", big), kind: "joinGroup", rides: false },
  ] as const;
  for (const tc of cases) {
    await t.test(tc.name, async (t) => {
      // The clock is the test's: the fake server's setTimeout(0)s run on
      // tick(0), the acknowledgement's delay once the ticks add up.
      const settle = mockClock(t);
      const srv = new FakeServer();
      const dialing = Client.dial("ws://fake", "me", "t", { WebSocket: srv.WebSocket, listeners: [{ onRecvNewMessage: () => {} }] });
      await settle();
      const c = await dialing;
      const acks = () => srv.requests("ack").map((f) => (f.body.case === "ack" ? cursors(f.body.value.cursors) : ""));
      try {
        srv.conns[0].reply({ id: 0n, body: { case: "newMessage", value: msg(1, "peer") } });
        await settle(); // handed over: the ack is due
        const req = tc.request(c);
        await settle();
        await req;
        const f = srv.requests(tc.kind)[0];
        assert.equal(cursors(f.acked), tc.rides ? "peer:1" : "", "acked carried by the request");
        t.mock.timers.tick(1000);
        await settle();
        assert.deepEqual(acks(), tc.rides ? [] : ["peer:1"], "the timer's acknowledgements");
        if (!tc.rides) return;
        srv.conns[0].reply({ id: 0n, body: { case: "newMessage", value: msg(2, "peer") } });
        await settle();
        t.mock.timers.tick(1000);
        await settle();
        assert.deepEqual(acks(), ["peer:2"], "with no request to carry it, the timer's acknowledgement");
      } finally {
        t.mock.timers.reset();
        await c.close();
      }
    });
  }
});

test("acknowledgements: the timer leaves to requests what was handed less than ackDelay ago", async (t) => {
  const settle = mockClock(t);
  const srv = new FakeServer();
  const dialing = Client.dial("ws://fake", "me", "t", { WebSocket: srv.WebSocket, listeners: [{ onRecvNewMessage: () => {} }] });
  await settle();
  const c = await dialing;
  const carried = () => srv.requests("markC2cRead").map((f) => f.acked.map((c) => `${c.conversation?.peerId}:${c.seq}`).join(" "));
  const read = async () => {
    const req = c.markC2CMessageAsRead("peer");
    await settle();
    await req;
  };
  try {
    srv.conns[0].reply({ id: 0n, body: { case: "newMessage", value: msg(1, "peer") } });
    await settle();
    await read();
    t.mock.timers.tick(500);
    srv.conns[0].reply({ id: 0n, body: { case: "newMessage", value: msg(2, "peer") } });
    await settle();
    // The timer, started by the first message, finds the second due for
    // half of ackDelay: it waits, and the next request carries it.
    t.mock.timers.tick(750);
    await settle();
    await read();
    t.mock.timers.tick(2000);
    await settle();
    assert.deepEqual(carried(), ["peer:1", "peer:2"]);
    assert.deepEqual(srv.requests("ack"), [], "AckRequests");
  } finally {
    t.mock.timers.reset();
    await c.close();
  }
});

test("a kickoff with CodeUnauthenticated stops the client: no reconnection, calls fail with it", async () => {
  const srv = new FakeServer();
  const events: string[] = [];
  const c = await Client.dial("ws://fake", "me", "t", {
    WebSocket: srv.WebSocket,
    backoffMin: 10,
    backoffMax: 20,
    listeners: [{ onDisconnected: (e) => events.push(`disconnected ${(e as ReadmarkError).code}`) }],
  });
  try {
    srv.conns[0].reply({ id: 0n, body: { case: "kickoff", value: { reason: { code: CodeUnauthenticated, desc: "token revoked" } } } });
    await waitFor("disconnected", () => events.length === 1);
    assert.deepEqual(events, [`disconnected ${CodeUnauthenticated}`]);
    await assert.rejects(c.ping(), (e: unknown) => e instanceof ReadmarkError && e.code === CodeUnauthenticated);
    assert.equal(srv.conns.length, 1, "no reconnection");
  } finally {
    await c.close();
  }
});

test("close from a listener callback", async () => {
  const srv = new FakeServer();
  let closed: Promise<void> | undefined;
  const c = await Client.dial("ws://fake", "me", "t", { WebSocket: srv.WebSocket });
  c.addAdvancedMsgListener({ onRecvNewMessage: () => (closed = c.close()) });
  srv.conns[0].reply({ id: 0n, body: { case: "newMessage", value: msg(1, "peer") } });
  await waitFor("the listener closed the client", () => closed !== undefined);
  await closed;
  await assert.rejects(c.ping(), (e: unknown) => e instanceof ReadmarkError && e.code === CodeUnavailable);
});

test("close during a reconnection attempt to a silent server returns at once", async () => {
  const srv = new FakeServer();
  const c = await Client.dial("ws://fake", "me", "t", { WebSocket: srv.WebSocket, backoffMin: 10, backoffMax: 20, loginTimeout: 60000 });
  srv.silent = true;
  srv.conns[0].drop();
  await waitFor("a reconnection attempt", () => srv.conns.length === 2);
  const start = Date.now();
  await c.close();
  assert.ok(Date.now() - start < 5000, `close took ${Date.now() - start} ms`);
});

/**
 * echoBeforeResponse makes srv store me's send to b as seq 2 and carry it in
 * a sync page, between two messages of b's, before the send's response: the
 * page once the send and a sync request have both arrived on one
 * connection; the response, and the last (empty) page, when the client asks
 * for the next page, having processed the first. With cut, the first attempt
 * of the send is cut off by a lost connection instead. It returns the cursors
 * of the requests for that next page.
 */
function echoBeforeResponse(srv: FakeServer, cut: boolean): pb.SyncCursor[][] {
  const next: pb.SyncCursor[][] = [];
  const mine = create(pb.MessageSchema, { msgId: "m2", seq: 2n, sender: "me", receiver: "b", text: "mine" });
  let on: FakeConn | undefined;
  let sendID = 0n;
  let syncID = 0n;
  let paged = false;
  let attempts = 0;
  srv.onRequest = (conn, f) => {
    if (conn !== on) [on, sendID, syncID, paged] = [conn, 0n, 0n, false];
    const b = f.body;
    if (b.case === "sendMessage") {
      if (++attempts === 1 && cut) {
        conn.drop();
        return true;
      }
      sendID = f.id;
    } else if (b.case === "sync" && !paged) {
      syncID = f.id;
    } else if (b.case === "sync") {
      next.push(b.value.cursors);
      conn.reply({ id: sendID, body: { case: "sendMessage", value: { message: mine } } });
      conn.reply({ id: f.id, body: { case: "sync", value: {} } });
      return true;
    } else {
      return false;
    }
    if (sendID !== 0n && syncID !== 0n && !paged) {
      paged = true;
      conn.reply({ id: syncID, body: { case: "sync", value: { messages: [msg(1, "b"), mine, msg(3, "b")], more: true } } });
    }
    return true;
  };
  return next;
}

for (const cut of [false, true]) {
  test(`own message synced before the send's response is not reported (${cut ? "send retried after a lost connection" : "send right after dial"})`, async () => {
    const srv = new FakeServer();
    const next = echoBeforeResponse(srv, cut);
    const got: string[] = [];
    const c = await Client.dial("ws://fake", "me", "t", {
      WebSocket: srv.WebSocket,
      backoffMin: 10,
      backoffMax: 20,
      listeners: [{ onRecvNewMessage: (m) => got.push(m.text) }],
    });
    try {
      const sent = await c.sendMessage(c.createTextMessage("mine"), { receiver: "b" });
      assert.deepEqual([sent.seq, sent.text, sent.isSelf], [2, "mine", true]);
      // Held messages count as received: the next page continues after them.
      assert.deepEqual(next.map((cs) => cs.map((x) => [x.conversation?.peerId, x.seq])), [[["b", 3n]]]);
      // A later push proves that nothing else is on its way.
      srv.conns.at(-1)?.reply({ id: 0n, body: { case: "newMessage", value: msg(4, "b") } });
      await waitFor("b4", () => got.includes("b4"));
      assert.deepEqual(got, ["b1", "b3", "b4"]);
    } finally {
      await c.close();
    }
  });
}

/**
 * holdDuringSend makes srv push, when me's send arrives, a message me sent
 * to b from another device and one of b's, then one of c's that proves them
 * processed; answer() then fails the send.
 */
function holdDuringSend(srv: FakeServer): { answer?: () => void } {
  const st: { answer?: () => void } = {};
  srv.onRequest = (conn, f) => {
    if (f.body.case !== "sendMessage") return false;
    const other = create(pb.MessageSchema, { seq: 2n, sender: "me", receiver: "b", text: "other device" });
    for (const m of [other, msg(3, "b"), msg(1, "c")]) conn.reply({ id: 0n, body: { case: "newMessage", value: m } });
    st.answer = () => conn.reply({ id: f.id, error: { code: CodePermissionDenied, desc: "blocked" } });
    return true;
  };
  return st;
}

for (const end of ["fails", "is cut by close"]) {
  test(`an own message from another device waits for an unresolved send to its conversation; reported when the send ${end}`, async () => {
    const srv = new FakeServer();
    const st = holdDuringSend(srv);
    const got: Message[] = [];
    const texts = (): string[] => got.map((m) => m.text);
    const c = await Client.dial("ws://fake", "me", "t", {
      WebSocket: srv.WebSocket,
      listeners: [{ onRecvNewMessage: (m) => got.push(m) }],
    });
    try {
      srv.conns[0].reply({ id: 0n, body: { case: "newMessage", value: msg(1, "b") } });
      await waitFor("b1", () => got.length === 1);
      const failed = c.sendMessage(c.createTextMessage("refused"), { receiver: "b" }).then(
        () => undefined,
        (e: unknown) => (e instanceof ReadmarkError ? e.code : e),
      );
      await waitFor("c1", () => texts().includes("c1"));
      assert.deepEqual(texts(), ["b1", "c1"], "b's conversation waits for the send");
      if (end === "fails") {
        st.answer?.();
        assert.equal(await failed, CodePermissionDenied);
        await waitFor("the held messages", () => got.length === 4);
        assert.deepEqual(texts(), ["b1", "c1", "other device", "b3"]);
        assert.deepEqual([got[2].isSelf, got[2].userID], [true, "b"]);
      } else {
        await c.close();
        assert.equal(await failed, CodeUnavailable);
      }
    } finally {
      await c.close();
    }
  });
}
