// End-to-end tests of the demo chat and the admin console in headless
// Chromium (Debian's /usr/bin/chromium driven by playwright-core) against a
// real readmarkd built from cmd/readmarkd, the scenarios of issue 9 section
// 5. Every wait is on a condition (Playwright's auto-waiting expectations),
// never a fixed sleep. Screenshots of each page go to web/screenshots/.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const webDir = resolve(import.meta.dirname, "..");
const repo = resolve(webDir, "..");
const shots = join(webDir, "screenshots");
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const timeout = 20_000; // per expectation; the machine may be loaded

let tmp, server, base, browser;

/** startServer runs readmarkd on a free loopback port and resolves its base URL. */
function startServer() {
  const bin = join(tmp, "readmarkd");
  execFileSync("go", ["build", "-o", bin, "./cmd/readmarkd"], { cwd: repo, stdio: "inherit" });
  server = spawn(bin, ["--listen", "127.0.0.1:0", "--dev-tokens", "--data", join(tmp, "data")], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  server.stderr.on("data", (d) => (log += d));
  return new Promise((ok, fail) => {
    let out = "";
    server.stdout.on("data", (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) ok(`http://${m[1]}`);
    });
    server.on("exit", (code) => fail(new Error(`readmarkd exited (${code}):\n${log}`)));
  });
}

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), "readmark-web-"));
  mkdirSync(shots, { recursive: true });
  base = await startServer();
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    const exited = new Promise((r) => server.once("exit", r));
    server.kill("SIGTERM");
    await exited;
  }
  rmSync(tmp, { recursive: true, force: true });
});

/** expectText waits until locator's text matches re. */
async function expectText(locator, re) {
  const deadline = Date.now() + timeout;
  let last = "";
  while (Date.now() < deadline) {
    last = (await locator.textContent({ timeout }).catch(() => "")) ?? "";
    if (re.test(last)) return last;
    await locator.page().waitForTimeout(50);
  }
  const shot = join(shots, `failure-${Date.now()}.png`);
  await locator.page().screenshot({ path: shot, fullPage: true });
  assert.fail(`text ${JSON.stringify(last)} never matched ${re} (screenshot: ${shot})`);
}

/** signIn opens the demo in a new browser context as user (a dev token). */
async function signIn(user, viewport = { width: 1100, height: 720 }) {
  const ctx = await browser.newContext({ viewport, locale: "en-GB", timezoneId: "UTC" });
  const page = await ctx.newPage();
  page.setDefaultTimeout(timeout);
  await page.goto(`${base}/demo/`);
  await page.getByLabel("User ID").fill(user);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expectText(page.getByTestId("me"), new RegExp(`^${user}$`));
  return page;
}

async function openConv(page, name) {
  const label = new RegExp(`^${name.replace(/[#]/g, "\\$&")}(,|$)`);
  await page.getByRole("navigation", { name: "Conversation list" }).getByRole("button", { name: label }).click();
  await page.getByRole("heading", { level: 1, name }).waitFor();
}

async function send(page, text, receipt) {
  await page.getByLabel("Message", { exact: true }).fill(text);
  await page.getByLabel("Read receipt").setChecked(receipt);
  await page.getByRole("button", { name: "Send" }).click();
}

/** ownMessage is the user's own message with this text. */
function ownMessage(page, text) {
  return page.locator("li.msg.self").filter({ hasText: text });
}

const timeRe = /\d{2}:\d{2}:\d{2}/;
let alice, bob, carol;

test("group read receipts: live counts and member lists", async () => {
  alice = await signIn("alice");
  bob = await signIn("bob", { width: 390, height: 780 }); // phone-sized
  carol = await signIn("carol");
  await alice.screenshot({ path: join(shots, "demo-empty.png") });

  await alice.getByText("Create a group").click();
  await alice.getByLabel("Type").selectOption("Work");
  await alice.getByLabel("Group ID (optional)").fill("team");
  await alice.getByLabel("Name").fill("Team");
  await alice.getByLabel("Members (user IDs, comma separated)").fill("bob, carol");
  await alice.getByRole("button", { name: "Create group" }).click();
  await alice.getByRole("heading", { level: 1, name: "# team" }).waitFor();
  await send(alice, "Ship it today?", true);
  const count = ownMessage(alice, "Ship it today?").getByTestId("receipt-count");
  await expectText(count, /^0 read · 2 unread$/);

  // bob opens the chat: the message comes into view and is acknowledged.
  await openConv(bob, "# team");
  await bob.getByRole("log").getByText("Ship it today?").waitFor();
  await expectText(count, /^1 read · 1 unread$/);
  await bob.screenshot({ path: join(shots, "demo-phone.png") });

  // Keyboard: the count is a button; Enter opens the lists, Escape closes them.
  await count.focus();
  await alice.keyboard.press("Enter");
  const dialog = alice.getByRole("dialog");
  const readList = dialog.getByRole("region", { name: /^Read/ });
  const unreadList = dialog.getByRole("region", { name: /^Unread/ });
  await expectText(readList.locator("li.member").filter({ hasText: "bob" }), new RegExp(`bob\\s*read ${timeRe.source}`));
  await expectText(unreadList.locator("li.member").filter({ hasText: "carol" }), /carol/);
  assert.equal(await readList.locator("li.member").count(), 1);
  assert.equal(await unreadList.locator("li.member").count(), 1);
  await alice.screenshot({ path: join(shots, "demo-readers.png") });
  await alice.keyboard.press("Escape");
  await dialog.waitFor({ state: "detached" });
  assert.equal(await count.evaluate((el) => el === document.activeElement), true, "focus returns to the count");

  await openConv(carol, "# team");
  await expectText(count, /^2 read · 0 unread$/);
  await alice.screenshot({ path: join(shots, "demo-group.png") });
});

test("C2C: mark all read shows the read time to the sender", async () => {
  await alice.getByText("Chat with a user").click();
  await alice.getByLabel("User ID", { exact: true }).fill("bob");
  await alice.getByRole("button", { name: "Open chat" }).click();
  await alice.getByRole("heading", { level: 1, name: "bob" }).waitFor();
  await send(alice, "Lunch at noon?", false);
  await ownMessage(alice, "Lunch at noon?").waitFor();
  const peerRead = alice.getByTestId("peer-read");
  await expectText(peerRead, /^One-to-one chat$/);

  await bob.getByRole("button", { name: "Back to conversations" }).click();
  await openConv(bob, "alice");
  await bob.getByRole("log").getByText("Lunch at noon?").waitFor();
  await bob.getByRole("button", { name: "Mark all read" }).click();
  await expectText(peerRead, new RegExp(`^bob read your messages up to ${timeRe.source}$`));
  await alice.screenshot({ path: join(shots, "demo-c2c.png") });
  await bob.screenshot({ path: join(shots, "demo-phone-c2c.png") });
});

test("console: disabling Work makes receipts fail with CodeGroupTypeNoReceipt", async () => {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 900 }, locale: "en-GB", timezoneId: "UTC" });
  const admin = await ctx.newPage();
  admin.setDefaultTimeout(timeout);
  await admin.goto(`${base}/console/`);
  await admin.screenshot({ path: join(shots, "console-signin.png") });
  await admin.getByRole("button", { name: "Sign in with a dev token" }).click();
  const stored = admin.getByTestId("stored-settings");
  await expectText(stored, /^Stored: Work, Public, Meeting, Community$/);
  await expectText(admin.getByTestId("stat-sessions"), /^3$/);
  await expectText(admin.getByTestId("stat-cancelled"), /^\d+$/); // reads stopped for gone clients: not errors

  await admin.getByRole("checkbox", { name: "Work" }).uncheck();
  await admin.getByRole("button", { name: "Save" }).click();
  await expectText(stored, /^Stored: Public, Meeting, Community$/);

  await openConv(alice, "# team");
  await send(alice, "One more thing", true);
  await expectText(alice.getByRole("alert"), /CodeGroupTypeNoReceipt \(\d+\)/);
  await alice.screenshot({ path: join(shots, "demo-error.png") });

  await admin.getByRole("checkbox", { name: "Work" }).check();
  await admin.getByRole("button", { name: "Save" }).click();
  await expectText(stored, /^Stored: Work, Public, Meeting, Community$/);
  await alice.getByRole("button", { name: "Send" }).click(); // the text stayed in the box
  await expectText(ownMessage(alice, "One more thing").getByTestId("receipt-count"), /^\d read · \d unread$/);
  assert.equal(await alice.getByRole("alert").count(), 0);

  // Look the first message up: counts and both lists.
  await admin.getByLabel("Group ID").fill("team");
  await admin.getByLabel("Seq or message ID").fill("1");
  await admin.getByRole("button", { name: "Look up" }).click();
  await expectText(admin.getByTestId("lookup-receipt"), /^2 read · 0 unread$/);
  const read = admin.getByRole("region", { name: /^Read/ });
  await expectText(read.locator("li.member").filter({ hasText: "carol" }), new RegExp(`read ${timeRe.source}`));
  await expectText(read.locator("li.member").filter({ hasText: "bob" }), new RegExp(`read ${timeRe.source}`));
  await expectText(admin.getByRole("region", { name: /^Unread/ }), /Nobody/);
  await expectText(admin.getByRole("table").first(), /send_message\s*CodeGroupTypeNoReceipt\s*1/);
  await admin.screenshot({ path: join(shots, "console.png"), fullPage: true });
});
