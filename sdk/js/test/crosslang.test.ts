// Cross-language: a Go SDK client (test/crosslang, built by `npm test`) and
// TypeScript clients in one group, both directions, with exact counts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { useServer, waitFor, id } from "./harness.js";
import { GroupWork, type Message, type MessageReceipt } from "../src/index.js";

const crosslang = process.env.READMARK_CROSSLANG ?? fileURLToPath(new URL("../../build-test/crosslang", import.meta.url));

const fx = useServer();

type Event = Record<string, unknown> & { event: string };

/** goClient runs the Go half; events collects its JSON lines, done settles when it exits. */
function goClient(user: string, args: string[]) {
  const p = spawn(crosslang, ["--url", fx.srv.url, "--user", user, "--token", fx.srv.token(user), ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const events: Event[] = [];
  createInterface({ input: p.stdout! }).on("line", (line) => events.push(JSON.parse(line) as Event));
  const done = new Promise<void>((resolve, reject) =>
    p.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`crosslang ${args[0]} exited with ${code}`)))),
  );
  return { events, done, kill: () => p.kill() };
}

async function tsUser(prefix: string) {
  const name = id(prefix);
  const c = await fx.dial(name);
  const msgs: Message[] = [];
  const receipts: MessageReceipt[] = [];
  c.addAdvancedMsgListener({ onRecvNewMessage: (m) => msgs.push(m), onRecvMessageReadReceipts: (rs) => receipts.push(...rs) });
  return { name, c, msgs, receipts };
}

test("Go sends, TypeScript clients read: the Go sender gets pushes with exact counts", async () => {
  const [ts1, ts2] = [await tsUser("ts"), await tsUser("ts")];
  const gid = id("xg");
  const goUser = id("go");
  const g = goClient(goUser, ["send", "--group", gid, "--members", `${ts1.name},${ts2.name}`, "--expect-read", "2"]);
  try {
    await waitFor("the Go client sends", () => g.events.some((e) => e.event === "sent"), 30000);
    const sent = g.events.find((e) => e.event === "sent")!;
    for (const u of [ts1, ts2]) {
      await waitFor(`${u.name} gets the Go message`, () => u.msgs.length === 1);
      const m = u.msgs[0];
      assert.deepEqual([m.msgID, m.seq, m.sender, m.groupID, m.text, m.needReadReceipt], [sent.msgID, sent.seq, goUser, gid, "from Go", true]);
    }
    await ts1.c.sendMessageReadReceipts(ts1.msgs);
    await waitFor("the Go sender sees 1 read", () => g.events.some((e) => e.event === "receipt" && e.read === 1));
    await ts2.c.sendMessageReadReceipts(ts2.msgs);
    await g.done;
  } finally {
    g.kill();
  }
  const pushes = g.events.filter((e) => e.event === "receipt").map((e) => [e.read, e.unread]);
  assert.deepEqual(pushes, [[1, 1], [2, 0]]);
  const pulled = g.events.find((e) => e.event === "pulled")!;
  assert.deepEqual([pulled.read, pulled.unread], [2, 0]);
});

test("TypeScript sends, a Go client and a TypeScript client read: exact counts pushed to TypeScript", async () => {
  const alice = await tsUser("tsalice");
  const carol = await tsUser("tscarol");
  const goBob = id("gobob");
  const gid = await alice.c.createGroup(GroupWork, id("xg"), "crosslang", [goBob, carol.name]);
  const m = alice.c.createTextMessage("from TypeScript");
  m.needReadReceipt = true;
  const sent = await alice.c.sendMessage(m, { groupID: gid });

  const g = goClient(goBob, ["read", "--group", gid]); // logs in after the send: gets it by sync
  try {
    await g.done;
  } finally {
    g.kill();
  }
  const got = g.events.find((e) => e.event === "got")!;
  assert.deepEqual([got.msgID, got.seq, got.text, got.sender], [sent.msgID, sent.seq, "from TypeScript", alice.name]);
  await waitFor("alice sees the Go reader", () => alice.receipts.some((r) => r.readCount === 1));
  assert.deepEqual(alice.receipts.map((r) => [r.msgID, r.readCount, r.unreadCount]), [[sent.msgID, 1, 1]]);

  await waitFor("carol gets it", () => carol.msgs.length === 1);
  await carol.c.sendMessageReadReceipts(carol.msgs);
  await waitFor("alice sees everyone read", () => alice.receipts.some((r) => r.readCount === 2));
  assert.deepEqual(alice.receipts.map((r) => [r.readCount, r.unreadCount]), [[1, 1], [2, 0]]);
  const [pulled] = await alice.c.getMessageReadReceipts([sent]);
  assert.deepEqual([pulled.readCount, pulled.unreadCount], [2, 0]);
});
