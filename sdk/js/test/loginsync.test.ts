// The first sync page riding on the login: the client's side, against the
// fake server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import * as pb from "../src/gen/readmark_pb.js";
import { Client } from "../src/index.js";
import { FakeServer } from "./fake.js";
import { waitFor } from "./harness.js";

function msg(seq: number, sender: string): pb.Message {
  return create(pb.MessageSchema, { seq: BigInt(seq), sender, receiver: "me", text: `${sender}${seq}` });
}

/** syncReq shows a sync request as [limit, noAck, [peer, seq]...]. */
function syncReq(r: pb.SyncRequest): unknown[] {
  return [r.limit, r.noAck, r.cursors.map((c) => [c.conversation?.peerId, c.seq])];
}

/** loginSyncs lists the sync requests the logins carried (syncReq). */
function loginSyncs(srv: FakeServer): unknown[] {
  return srv.requests("login").map((f) => {
    const r = f.body.case === "login" ? f.body.value.sync : undefined;
    return r && syncReq(r);
  });
}

async function dial(srv: FakeServer, got: string[]): Promise<Client> {
  return Client.dial("ws://fake", "me", "t", {
    WebSocket: srv.WebSocket,
    backoffMin: 10,
    backoffMax: 20,
    listeners: [{ onRecvNewMessage: (m) => got.push(m.text) }],
  });
}

test("login sync: a page carried by the login response is the whole sync; pushes before the response come after it; the next login continues after it", async () => {
  const srv = new FakeServer();
  srv.loginSync = (conn) => {
    conn.reply({ id: 0n, body: { case: "newMessage", value: msg(3, "a") } }); // ahead of the login response
    return { messages: [msg(1, "a"), msg(2, "a")] };
  };
  const got: string[] = [];
  const c = await dial(srv, got);
  try {
    await waitFor("the page and the push", () => got.length === 3);
    assert.deepEqual(got, ["a1", "a2", "a3"]);
    await c.ping();
    assert.equal(srv.requests("sync").length, 0, "no SyncRequest");
    srv.conns[0].drop();
    await waitFor("the second login", () => srv.requests("login").length === 2);
    assert.deepEqual(loginSyncs(srv), [
      [200, true, []],
      [200, true, [["a", 3n]]],
    ]);
    srv.conns[1].reply({ id: 0n, body: { case: "newMessage", value: msg(4, "a") } });
    await waitFor("a4", () => got.includes("a4"));
    assert.deepEqual(got, ["a1", "a2", "a3", "a4"], "the page and the push again: dropped");
    await c.ping();
    assert.equal(srv.requests("sync").length, 0, "no SyncRequest");
  } finally {
    await c.close();
  }
});

test("login sync: after a login page with more, SyncRequests continue from the cursors after it", async () => {
  const srv = new FakeServer();
  srv.loginSync = () => ({ more: true, messages: [msg(1, "a"), msg(2, "a")] });
  const syncs: pb.SyncRequest[] = [];
  srv.onRequest = (conn, f) => {
    if (f.body.case !== "sync") return false;
    syncs.push(f.body.value);
    conn.reply({ id: f.id, body: { case: "sync", value: { messages: [msg(3, "a")] } } });
    return true;
  };
  const got: string[] = [];
  const c = await dial(srv, got);
  try {
    await waitFor("the pages", () => got.length === 3);
    assert.deepEqual(got, ["a1", "a2", "a3"]);
    assert.deepEqual(syncs.map(syncReq), [[200, true, [["a", 2n]]]]);
  } finally {
    await c.close();
  }
});

test("login sync: a login response without the page is followed by a SyncRequest, as before", async () => {
  const srv = new FakeServer();
  srv.onRequest = (conn, f) => {
    if (f.body.case !== "sync") return false;
    conn.reply({ id: f.id, body: { case: "sync", value: { messages: [msg(1, "a")] } } });
    return true;
  };
  const got: string[] = [];
  const c = await dial(srv, got);
  try {
    await waitFor("the page", () => got.length === 1);
    assert.deepEqual(loginSyncs(srv), [[200, true, []]], "the login asked for the page");
    assert.deepEqual(
      srv.requests("sync").map((f) => f.body.case === "sync" && syncReq(f.body.value)),
      [[200, true, []]],
    );
  } finally {
    await c.close();
  }
});
