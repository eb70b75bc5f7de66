// The seed's flows (docs: /work/shared/seed, README) through the TypeScript SDK against a real readmarkd.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer, waitFor, id } from "./harness.js";
import {
  CodeGroupTypeNoReceipt,
  GroupEventCreated,
  GroupEventJoined,
  GroupEventKicked,
  GroupEventQuit,
  GroupPublic,
  GroupWork,
  type GroupEvent,
  type Message,
  type MessageReceipt,
  ReadMembersFilterRead,
  ReadMembersFilterUnread,
  ReadmarkError,
} from "../src/index.js";

const fx = useServer();

/** user dials a new client for a fresh user and records what its listeners get. */
async function user(prefix: string) {
  const name = id(prefix);
  const c = await fx.dial(name);
  const rec = { name, c, msgs: [] as Message[], receipts: [] as MessageReceipt[], c2c: [] as MessageReceipt[], self: [] as Message[], events: [] as GroupEvent[] };
  c.addAdvancedMsgListener({
    onRecvNewMessage: (m) => rec.msgs.push(m),
    onRecvMessageReadReceipts: (rs) => rec.receipts.push(...rs),
    onRecvC2CReadReceipt: (rs) => rec.c2c.push(...rs),
    onRecvSelfReadReceipts: (ms) => rec.self.push(...ms),
  });
  c.addGroupListener({ onGroupEvent: (ev) => rec.events.push(ev) });
  return rec;
}

async function rejectsWith(p: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ReadmarkError, `want ReadmarkError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

test("C2C read receipt: the sender gets the push and the pull shows it read", async () => {
  const alice = await user("alice");
  const bob = await user("bob");
  const m = alice.c.createTextMessage("hi bob");
  m.needReadReceipt = true;
  const sent = await alice.c.sendMessage(m, { receiver: bob.name });
  assert.equal(sent.userID, bob.name);
  assert.ok(sent.msgID !== "" && sent.seq === 1 && sent.timestamp > 0);
  assert.equal(m.msgID, sent.msgID, "sendMessage updates msg in place");

  await waitFor("bob gets the message", () => bob.msgs.length === 1);
  const got = bob.msgs[0];
  assert.deepEqual([got.text, got.userID, got.sender, got.needReadReceipt, got.isSelf], ["hi bob", alice.name, alice.name, true, false]);

  let [r] = await alice.c.getMessageReadReceipts([sent]);
  assert.equal(r.isPeerRead, false);
  await bob.c.sendMessageReadReceipts([got]);
  await waitFor("alice gets the receipt", () => alice.receipts.length > 0);
  assert.equal(alice.receipts[0].msgID, sent.msgID);
  assert.equal(alice.receipts[0].userID, bob.name);
  assert.equal(alice.receipts[0].isPeerRead, true);
  [r] = await alice.c.getMessageReadReceipts([sent]);
  assert.equal(r.isPeerRead, true);

  // Sending a receipt twice is harmless; history tells bob he sent one.
  await bob.c.sendMessageReadReceipts([got]);
  const hist = await bob.c.getC2CHistoryMessageList(alice.name, 10);
  assert.equal(hist.length, 1);
  assert.equal(hist[0].receiptSent, true);
});

test("group read receipts: pushes with exact counts, pull, read and unread member lists with paging", async () => {
  const alice = await user("alice");
  const readers = await Promise.all([user("m1"), user("m2"), user("m3"), user("m4"), user("m5")]);
  await readers[0].c.setSelfInfo("Member One", "https://example.com/1.png");
  const gid = await alice.c.createGroup(GroupWork, id("grp"), "team", readers.map((r) => r.name));
  const m = alice.c.createTextMessage("ship it?");
  m.needReadReceipt = true;
  const sent = await alice.c.sendMessage(m, { groupID: gid });
  assert.equal(sent.groupID, gid);
  await waitFor("every member gets it", () => readers.every((r) => r.msgs.length === 1));

  // Members read one after the other; alice's push after each has the exact counts.
  for (let i = 0; i < 3; i++) {
    await readers[i].c.sendMessageReadReceipts(readers[i].msgs);
    await waitFor(`push after read ${i + 1}`, () => alice.receipts.some((r) => r.readCount === i + 1));
    const r = alice.receipts.find((x) => x.readCount === i + 1)!;
    assert.deepEqual([r.msgID, r.groupID, r.readCount, r.unreadCount, r.seq], [sent.msgID, gid, i + 1, 5 - (i + 1), sent.seq]);
  }
  for (const r of alice.receipts) assert.equal(r.readCount + r.unreadCount, 5, "counts always add up");

  const [pulled] = await alice.c.getMessageReadReceipts([sent]);
  assert.deepEqual([pulled.readCount, pulled.unreadCount], [3, 2]);

  // Read list, two per page: 3 members over two pages, with read times.
  const read: string[] = [];
  let page = await alice.c.getGroupMessageReadMemberList(sent, ReadMembersFilterRead, 0, 2);
  assert.equal(page.members.length, 2);
  assert.equal(page.isFinished, false);
  read.push(...page.members.map((x) => x.userID));
  for (const mem of page.members) assert.ok(mem.readTime >= sent.timestamp, "read time set");
  const one = page.members.find((x) => x.userID === readers[0].name);
  assert.equal(one?.nickName, "Member One");
  assert.equal(one?.faceURL, "https://example.com/1.png");
  page = await alice.c.getGroupMessageReadMemberList(sent, ReadMembersFilterRead, page.nextSeq, 2);
  read.push(...page.members.map((x) => x.userID));
  assert.equal(page.isFinished, true);
  assert.deepEqual(read.sort(), readers.slice(0, 3).map((r) => r.name).sort());

  const unread = await alice.c.getGroupMessageReadMemberList(sent, ReadMembersFilterUnread, 0, 100);
  assert.equal(unread.isFinished, true);
  assert.deepEqual(unread.members.map((x) => x.userID).sort(), readers.slice(3).map((r) => r.name).sort());
  for (const mem of unread.members) assert.equal(mem.readTime, 0);

  // The last readers bring it to all read.
  await readers[3].c.sendMessageReadReceipts(readers[3].msgs);
  await readers[4].c.sendMessageReadReceipts(readers[4].msgs);
  await waitFor("all read", () => alice.receipts.some((r) => r.readCount === 5 && r.unreadCount === 0));
});

test("mark C2C read: the peer learns up to when everything is read", async () => {
  const alice = await user("alice");
  const bob = await user("bob");
  const sent = await alice.c.sendMessage(alice.c.createTextMessage("one"), { receiver: bob.name });
  await waitFor("bob gets it", () => bob.msgs.length === 1);
  await bob.c.markC2CMessageAsRead(alice.name);
  await waitFor("alice gets the C2C read receipt", () => alice.c2c.length === 1);
  const r = alice.c2c[0];
  assert.equal(r.userID, bob.name);
  assert.ok(r.timestamp >= sent.timestamp, `read time ${r.timestamp} covers the message sent at ${sent.timestamp}`);
});

test("group type not enabled for receipts: CodeGroupTypeNoReceipt until the admin enables it", async () => {
  const alice = await user("alice");
  const bob = await user("bob");
  const gid = await alice.c.createGroup(GroupWork, "", "work", [bob.name]);
  assert.notEqual(gid, "", "the server picks an ID");
  await fx.srv.setReceiptGroupTypes(["Public"]);
  try {
    const m = alice.c.createTextMessage("needs receipt");
    m.needReadReceipt = true;
    await rejectsWith(alice.c.sendMessage(m, { groupID: gid }), CodeGroupTypeNoReceipt);
    // Without a receipt request it still goes through.
    await alice.c.sendMessage(alice.c.createTextMessage("plain"), { groupID: gid });
  } finally {
    await fx.srv.setReceiptGroupTypes(["Work", "Public", "Meeting", "Community"]);
  }
  const m = alice.c.createTextMessage("needs receipt again");
  m.needReadReceipt = true;
  const sent = await alice.c.sendMessage(m, { groupID: gid });
  assert.equal(sent.needReadReceipt, true);
});

test("self receipts reach the user's other device", async () => {
  const alice = await user("alice");
  const bob = await user("bob");
  const bob2 = await fx.dial(bob.name);
  const self: Message[] = [];
  bob2.addAdvancedMsgListener({ onRecvSelfReadReceipts: (ms) => self.push(...ms) });
  const m = alice.c.createTextMessage("read me");
  m.needReadReceipt = true;
  const sent = await alice.c.sendMessage(m, { receiver: bob.name });
  await waitFor("bob gets it", () => bob.msgs.length === 1);
  await bob.c.sendMessageReadReceipts(bob.msgs);
  await waitFor("bob's other device hears of it", () => self.length === 1);
  assert.deepEqual([self[0].msgID, self[0].seq, self[0].userID, self[0].receiptSent], [sent.msgID, sent.seq, alice.name, true]);
});

test("group events and history paging", async () => {
  const alice = await user("alice");
  const bob = await user("bob");
  const carol = await user("carol");
  const gid = id("pub");
  await alice.c.createGroup(GroupPublic, gid, "public", [bob.name]);
  await waitFor("created event", () => bob.events.some((e) => e.kind === GroupEventCreated));
  const created = bob.events.find((e) => e.kind === GroupEventCreated)!;
  assert.deepEqual([created.groupID, created.groupType, created.opUserID], [gid, "Public", alice.name]);
  await carol.c.joinGroup(gid, "hello");
  await waitFor("joined event", () => alice.events.some((e) => e.kind === GroupEventJoined && e.userIDs.includes(carol.name)));

  for (let i = 1; i <= 5; i++) await alice.c.sendMessage(alice.c.createTextMessage(`m${i}`), { groupID: gid });
  await waitFor("carol gets all five", () => carol.msgs.length === 5);
  assert.deepEqual(carol.msgs.map((m) => m.text), ["m1", "m2", "m3", "m4", "m5"]);
  const p1 = await carol.c.getGroupHistoryMessageList(gid, 2);
  assert.deepEqual(p1.map((m) => m.text), ["m5", "m4"]);
  const p2 = await carol.c.getGroupHistoryMessageList(gid, 2, p1[1]);
  assert.deepEqual(p2.map((m) => m.text), ["m3", "m2"]);

  await carol.c.quitGroup(gid);
  await waitFor("quit event", () => alice.events.some((e) => e.kind === GroupEventQuit && e.userIDs.includes(carol.name)));
  await alice.c.kickGroupMember(gid, [bob.name], "bye");
  await waitFor("kicked event", () => bob.events.some((e) => e.kind === GroupEventKicked));
  const kicked = bob.events.find((e) => e.kind === GroupEventKicked)!;
  assert.deepEqual([kicked.userIDs, kicked.opUserID, kicked.reason], [[bob.name], alice.name, "bye"]);
  await alice.c.inviteUserToGroup(gid, [bob.name]);
  await waitFor("joined again", () => bob.events.some((e) => e.kind === GroupEventJoined));
});

test("sync: messages sent while offline are delivered once, in order, after login", async () => {
  const alice = await user("alice");
  const bobName = id("bob");
  // bob has logged in once (the user exists), then is offline.
  await (await fx.srv.dial(bobName)).close();
  for (let i = 1; i <= 3; i++) await alice.c.sendMessage(alice.c.createTextMessage(`offline ${i}`), { receiver: bobName });
  const bob = await fx.dial(bobName);
  const got: Message[] = [];
  bob.addAdvancedMsgListener({ onRecvNewMessage: (m) => got.push(m) });
  await waitFor("the three offline messages", () => got.length === 3);
  await alice.c.sendMessage(alice.c.createTextMessage("live"), { receiver: bobName });
  await waitFor("the live one", () => got.length === 4);
  assert.deepEqual(got.map((m) => [m.text, m.seq]), [["offline 1", 1], ["offline 2", 2], ["offline 3", 3], ["live", 4]]);
});

test("own sends are not reported as new messages; other devices of the sender get them", async () => {
  const alice = await user("alice");
  const bob = await user("bob");
  const alice2 = await fx.dial(alice.name);
  const other: Message[] = [];
  alice2.addAdvancedMsgListener({ onRecvNewMessage: (m) => other.push(m) });
  await alice.c.sendMessage(alice.c.createTextMessage("x"), { receiver: bob.name });
  await waitFor("alice's other device gets it", () => other.length === 1);
  assert.equal(other[0].isSelf, true);
  assert.equal(other[0].userID, bob.name);
  await waitFor("bob gets it", () => bob.msgs.length === 1);
  await alice.c.ping(); // a round trip after which an echo would have arrived
  assert.equal(alice.msgs.length, 0);
});

test("device ID: a client resumes where the same device acknowledged, without repeats", async () => {
  const alice = await user("alice");
  const bobName = id("bob");
  const device = id("dev");
  const first: Message[] = [];
  const b1 = await fx.srv.dial(bobName, { deviceID: device, listeners: [{ onRecvNewMessage: (m) => first.push(m) }] });
  for (let i = 1; i <= 2; i++) await alice.c.sendMessage(alice.c.createTextMessage(`seen ${i}`), { receiver: bobName });
  await waitFor("bob's first client sees two", () => first.length === 2);
  await b1.close(); // acknowledges what its listeners saw
  for (let i = 1; i <= 2; i++) await alice.c.sendMessage(alice.c.createTextMessage(`new ${i}`), { receiver: bobName });

  const again: Message[] = [];
  const b2 = await fx.dial(bobName, { deviceID: device, listeners: [{ onRecvNewMessage: (m) => again.push(m) }] });
  await waitFor("the two new ones", () => again.length >= 2);
  await b2.ping();
  assert.deepEqual(again.map((m) => m.text), ["new 1", "new 2"]);
});

test("device ID: messages synced but not handed to a listener yet are not acknowledged: the next client of the device gets them", async () => {
  const alice = await user("alice");
  const bobName = id("bob");
  const device = id("dev");
  await (await fx.srv.dial(bobName)).close(); // bob exists
  const n = 201; // more than a sync page: the second page's request carries cursors past the first
  for (let i = 1; i <= n; i++) await alice.c.sendMessage(alice.c.createTextMessage(`m ${i}`), { receiver: bobName });
  const syncs = `readmark_requests_total{code="OK",type="sync"}`;
  const base = await fx.srv.metric(syncs);
  // No listener: the synced messages wait in the client, handed to none.
  const b1 = await fx.srv.dial(bobName, { deviceID: device });
  const deadline = Date.now() + 20000;
  while ((await fx.srv.metric(syncs)) < base + 2) {
    if (Date.now() > deadline) throw new Error("timed out waiting for two sync pages");
    await new Promise((r) => setTimeout(r, 5));
  }
  // b1 stays connected (its close() would acknowledge what it received,
  // as it never had a listener): only its sync requests could have.
  const again: Message[] = [];
  await fx.dial(bobName, { deviceID: device, listeners: [{ onRecvNewMessage: (m) => again.push(m) }] });
  await waitFor("all of them again", () => again.length >= n);
  assert.deepEqual(
    again.map((m) => m.seq),
    Array.from({ length: n }, (_, i) => i + 1),
  );
  await b1.close();
});

test("device ID: a client that never had a listener acknowledges what it received when closed", async () => {
  const alice = await user("alice");
  const bobName = id("bob");
  const device = id("dev");
  await (await fx.srv.dial(bobName)).close(); // bob exists
  for (let i = 1; i <= 3; i++) await alice.c.sendMessage(alice.c.createTextMessage(`old ${i}`), { receiver: bobName });
  const b1 = await fx.srv.dial(bobName, { deviceID: device });
  await b1.ping(); // after the login's sync page
  await b1.close();

  await alice.c.sendMessage(alice.c.createTextMessage("new"), { receiver: bobName });
  const got: Message[] = [];
  const b2 = await fx.dial(bobName, { deviceID: device, listeners: [{ onRecvNewMessage: (m) => got.push(m) }] });
  await waitFor("the new one", () => got.length >= 1);
  await b2.ping();
  assert.deepEqual(got.map((m) => m.text), ["new"]);
});

test("the JSON subprotocol (readmark.v1.json) works the same", async () => {
  const aliceName = id("alice");
  const bob = await user("bob");
  const alice = await fx.dial(aliceName, { json: true });
  const receipts: MessageReceipt[] = [];
  alice.addAdvancedMsgListener({ onRecvMessageReadReceipts: (rs) => receipts.push(...rs) });
  const m = alice.createTextMessage("über JSON");
  m.needReadReceipt = true;
  const sent = await alice.sendMessage(m, { receiver: bob.name });
  await waitFor("bob gets it", () => bob.msgs.length === 1);
  assert.equal(bob.msgs[0].text, "über JSON");
  await bob.c.sendMessageReadReceipts(bob.msgs);
  await waitFor("alice gets the receipt over JSON", () => receipts.length === 1);
  assert.deepEqual([receipts[0].msgID, receipts[0].isPeerRead], [sent.msgID, true]);
});
