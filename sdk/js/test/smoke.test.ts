import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Server, waitFor, id } from "./harness.js";
import { GroupWork, type Message, type MessageReceipt } from "../src/index.js";

let srv: Server;
before(async () => {
  srv = await Server.start();
});
after(async () => {
  await srv.close();
});

test("group receipt round trip", async () => {
  const [alice, bob] = [id("alice"), id("bob")];
  const a = await srv.dial(alice);
  const b = await srv.dial(bob);
  try {
    const got: Message[] = [];
    const receipts: MessageReceipt[] = [];
    b.addAdvancedMsgListener({ onRecvNewMessage: (m) => got.push(m) });
    a.addAdvancedMsgListener({ onRecvMessageReadReceipts: (rs) => receipts.push(...rs) });
    const g = await a.createGroup(GroupWork, id("g"), "team", [bob]);
    const m = a.createTextMessage("hello");
    m.needReadReceipt = true;
    const sent = await a.sendMessage(m, { groupID: g });
    assert.equal(sent.seq, 1);
    await waitFor("bob gets the message", () => got.length === 1);
    await b.sendMessageReadReceipts(got);
    await waitFor("alice gets the receipt", () => receipts.some((r) => r.readCount === 1));
    assert.equal(receipts.at(-1)!.unreadCount, 0);
  } finally {
    await a.close();
    await b.close();
  }
});
