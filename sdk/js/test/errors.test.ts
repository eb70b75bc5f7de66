// Every error code a TypeScript SDK user can meet, provoked through the SDK
// against a real readmarkd. Not reachable from the SDK, so not here:
// CodeProtocol (the SDK never sends a malformed frame; the Go integration
// tests drive it over a raw WebSocket), CodeInternal (a storage fault) and
// CodeConnectionLimit (the server refuses the WebSocket upgrade with HTTP
// 503, which the WebSocket API does not expose as a code: the dial fails
// with CodeUnavailable and the client retries, on another address if it has
// several).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Server, WS, id } from "./harness.js";
import {
  Client,
  type Message,
  CodeAlreadyExists,
  CodeInvalidArgument,
  CodeMessageNoReceipt,
  CodeMessageTooLarge,
  CodeNotFound,
  CodePermissionDenied,
  CodeRateLimited,
  CodeSessionLimit,
  CodeReceiptOwnMessage,
  CodeTooMany,
  CodeUnauthenticated,
  CodeUnavailable,
  GroupWork,
  ReadMembersFilterRead,
  ReadmarkError,
} from "../src/index.js";

let srv: Server;
let alice: Client;
let bob: Client;
let aliceName: string;
let bobName: string;
before(async () => {
  srv = await Server.start();
  [aliceName, bobName] = [id("alice"), id("bob")];
  alice = await srv.dial(aliceName);
  bob = await srv.dial(bobName);
});
after(async () => {
  await alice.close();
  await bob.close();
  await srv.close();
});

async function rejectsWith(p: Promise<unknown>, code: number): Promise<ReadmarkError> {
  let got: unknown;
  await assert.rejects(p, (err: unknown) => {
    got = err;
    return true;
  });
  assert.ok(got instanceof ReadmarkError, `want ReadmarkError, got ${String(got)}`);
  assert.equal(got.code, code, got.message);
  assert.ok(got.desc !== "", "desc says why");
  return got;
}

test("CodeUnauthenticated: a bad, foreign or expired token", async () => {
  await rejectsWith(Client.dial(srv.url, "mallory", "not-a-token", { WebSocket: WS }), CodeUnauthenticated);
  await rejectsWith(Client.dial(srv.url, "mallory", srv.token("alice"), { WebSocket: WS }), CodeUnauthenticated);
  await rejectsWith(Client.dial(srv.url, "mallory", srv.token("mallory", -10), { WebSocket: WS }), CodeUnauthenticated);
});

test("CodeInvalidArgument: caught by the SDK and by the server", async () => {
  const m = alice.createTextMessage("x");
  await rejectsWith(alice.sendMessage(m, { receiver: bobName, groupID: "g" }), CodeInvalidArgument);
  await rejectsWith(alice.sendMessage(m, {}), CodeInvalidArgument);
  await rejectsWith(alice.createGroup("Nope" as typeof GroupWork, "", "x"), CodeInvalidArgument);
  await rejectsWith(alice.getC2CHistoryMessageList(bobName, -1), CodeInvalidArgument);
  await rejectsWith(Client.dial("ftp://127.0.0.1:1", "a", "t", { WebSocket: WS }), CodeInvalidArgument);
  // Server side: an empty message, a group ID with forbidden characters.
  await rejectsWith(alice.sendMessage(alice.createTextMessage(""), { receiver: bobName }), CodeInvalidArgument);
  await rejectsWith(alice.createGroup(GroupWork, "bad id with spaces", "x"), CodeInvalidArgument);
});

test("CodeNotFound, CodeAlreadyExists, CodePermissionDenied", async () => {
  await rejectsWith(alice.sendMessage(alice.createTextMessage("x"), { groupID: id("nogroup") }), CodeNotFound);
  const gid = id("work");
  await alice.createGroup(GroupWork, gid, "work");
  await rejectsWith(alice.createGroup(GroupWork, gid, "again"), CodeAlreadyExists);
  await rejectsWith(bob.joinGroup(gid, "let me in"), CodePermissionDenied); // Work groups: invitation only
  await rejectsWith(bob.sendMessage(bob.createTextMessage("x"), { groupID: gid }), CodePermissionDenied);
  await rejectsWith(bob.kickGroupMember(gid, [aliceName]), CodePermissionDenied);
});

test("receipt errors: CodeMessageNoReceipt, CodeReceiptOwnMessage, CodePermissionDenied (not the sender)", async () => {
  const got: Message[] = [];
  const l = { onRecvNewMessage: (m: Message) => got.push(m) };
  bob.addAdvancedMsgListener(l);
  try {
    const plain = await alice.sendMessage(alice.createTextMessage("no receipt"), { receiver: bobName });
    const m = alice.createTextMessage("with receipt");
    m.needReadReceipt = true;
    const withReceipt = await alice.sendMessage(m, { receiver: bobName });
    const deadline = Date.now() + 10000;
    while (got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.equal(got.length, 2);
    await rejectsWith(bob.sendMessageReadReceipts([got[0]]), CodeMessageNoReceipt);
    await rejectsWith(alice.sendMessageReadReceipts([withReceipt]), CodeReceiptOwnMessage);
    await rejectsWith(bob.getMessageReadReceipts([got[1]]), CodePermissionDenied);
    await rejectsWith(alice.getMessageReadReceipts([{ ...plain, msgID: "wrong" }]), CodeNotFound);
  } finally {
    bob.removeAdvancedMsgListener(l);
  }
});

test("limits from login: oversized calls fail alone before they are sent", async () => {
  const lim = alice.limits;
  assert.ok(lim.maxBatch > 0 && lim.maxTextBytes > 0 && lim.maxFrameBytes > 0, "login announced limits");
  const withReceipt = alice.createTextMessage("x");
  withReceipt.needReadReceipt = true;
  const m = await alice.sendMessage(withReceipt, { receiver: bobName });
  const inFlight = alice.ping(); // shares the connection with the failing calls

  const tooMany = Array.from({ length: lim.maxBatch + 1 }, () => m);
  await rejectsWith(alice.getMessageReadReceipts(tooMany), CodeTooMany);
  await rejectsWith(bob.sendMessageReadReceipts(tooMany), CodeTooMany);
  await rejectsWith(alice.getC2CHistoryMessageList(bobName, lim.maxBatch + 1), CodeTooMany);
  await rejectsWith(alice.getGroupMessageReadMemberList(m, ReadMembersFilterRead, 0, lim.maxBatch + 1), CodeTooMany);
  const many = Array.from({ length: lim.maxMembersPerCall + 1 }, (_, i) => `u${i}`);
  await rejectsWith(alice.createGroup(GroupWork, "", "big", many), CodeTooMany);

  await rejectsWith(alice.sendMessage(alice.createTextMessage("x".repeat(lim.maxTextBytes + 1)), { receiver: bobName }), CodeMessageTooLarge);
  // Multi-byte text counts in UTF-8 bytes.
  await rejectsWith(alice.sendMessage(alice.createTextMessage("é".repeat(lim.maxTextBytes / 2 + 1)), { receiver: bobName }), CodeMessageTooLarge);
  await rejectsWith(alice.sendMessage(alice.createCustomMessage(new Uint8Array(lim.maxCustomDataBytes + 1)), { receiver: bobName }), CodeMessageTooLarge);
  // A frame over max_frame_bytes: a full batch of references with huge IDs.
  const huge = { ...m, msgID: "x".repeat(Math.ceil(lim.maxFrameBytes / lim.maxBatch) + 10) };
  await rejectsWith(alice.getMessageReadReceipts(Array.from({ length: lim.maxBatch }, () => huge)), CodeInvalidArgument);

  // At the limits it works, and the connection was never dropped.
  await alice.sendMessage(alice.createTextMessage("x".repeat(lim.maxTextBytes)), { receiver: bobName });
  await alice.sendMessage(alice.createCustomMessage(new Uint8Array(lim.maxCustomDataBytes)), { receiver: bobName });
  const rs = await alice.getMessageReadReceipts(Array.from({ length: lim.maxBatch }, () => m));
  assert.equal(rs.length, lim.maxBatch);
  assert.ok((await inFlight) > 0);
});

test("CodeUnavailable: calls on a closed client, and calls timing out or aborted", async () => {
  const c = await srv.dial(aliceName);
  const ctl = new AbortController();
  ctl.abort(new Error("user gave up"));
  const err = await rejectsWith(c.ping({ signal: ctl.signal }), CodeUnavailable);
  assert.equal((err.cause as Error).message, "user gave up");
  await c.close();
  await rejectsWith(c.ping(), CodeUnavailable);
  await c.close(); // twice is fine
});

test("CodeRateLimited: a session over --rate-limit", async () => {
  const slow = await Server.start(["--rate-limit", "1", "--rate-burst", "2"]);
  try {
    const c = await slow.dial(id("eager"));
    try {
      const results = await Promise.allSettled(Array.from({ length: 10 }, () => c.ping()));
      const limited = results.filter((r) => r.status === "rejected");
      assert.ok(limited.length > 0, "some pings are refused");
      for (const r of limited) {
        const e = (r as PromiseRejectedResult).reason;
        assert.ok(e instanceof ReadmarkError && e.code === CodeRateLimited, String(e));
      }
    } finally {
      await c.close();
    }
  } finally {
    await slow.close();
  }
});

test("CodeSessionLimit: one login over --max-sessions-per-user", async () => {
  const small = await Server.start(["--max-sessions-per-user", "1"]);
  try {
    const name = id("busy");
    const first = await small.dial(name);
    try {
      await rejectsWith(small.dial(name, { reconnect: false }), CodeSessionLimit);
      await first.ping(); // the first session is unaffected
    } finally {
      await first.close();
    }
  } finally {
    await small.close();
  }
});

test("a refused WebSocket upgrade fails the dial with CodeUnavailable, saying why", async () => {
  const full = await Server.start(["--max-connections", "1"]);
  try {
    const first = await full.dial(id("first"));
    try {
      const err = await rejectsWith(full.dial(id("second")), CodeUnavailable);
      assert.match(err.desc, /503/);
    } finally {
      await first.close();
    }
  } finally {
    await full.close();
  }
});
