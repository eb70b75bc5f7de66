// The demo chat: sign in as a user, chat in groups and C2C, and watch read
// receipts arrive live.
import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { Client, ReadMembersFilterRead, ReadMembersFilterUnread, type Message } from "@readmark/sdk";
import "../shared/base.css";
import "./demo.css";
import { Brand } from "../shared/brand";
import { clock } from "../shared/format";
import { devToken, devTokensEnabled } from "../shared/http";
import { MemberList, pageSize } from "../shared/memberlist";
import { describe, Store, type Conv } from "./store";

const sessionKey = "readmark.demo.session";
const groupTypes = ["Work", "Public", "Meeting", "Community", "AVChatRoom"];

interface Session {
  userID: string;
  token: string;
}

function useStore(store: Store): void {
  const [, setV] = useState(0);
  useEffect(() => store.subscribe(() => setV((v) => v + 1)), [store]);
}

function App() {
  const [session, setSession] = useState<Session | null>(() => {
    try {
      return JSON.parse(sessionStorage.getItem(sessionKey) ?? "null");
    } catch {
      return null;
    }
  });
  if (!session) {
    return (
      <SignIn
        onSignedIn={(s) => {
          sessionStorage.setItem(sessionKey, JSON.stringify(s));
          setSession(s);
        }}
      />
    );
  }
  return (
    <Chat
      key={session.userID}
      session={session}
      onSignOut={() => {
        sessionStorage.removeItem(sessionKey);
        setSession(null);
      }}
    />
  );
}

function SignIn(props: { onSignedIn: (s: Session) => void }) {
  const [dev, setDev] = useState<boolean | null>(null);
  const [userID, setUserID] = useState("");
  const [token, setToken] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    void devTokensEnabled().then(setDev);
  }, []);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      const id = userID.trim();
      props.onSignedIn({ userID: id, token: dev && !token.trim() ? await devToken(id) : token.trim() });
    } catch (err) {
      setError(describe(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin panel">
      <h1>
        <Brand title="Readmark demo chat" />
      </h1>
      <form class="field-stack" onSubmit={submit}>
        <label class="field">
          <span>User ID</span>
          <input name="user" value={userID} onInput={(e) => setUserID(e.currentTarget.value)} required autoFocus />
        </label>
        <label class="field">
          <span>{dev ? "Token (optional: the server mints one for you)" : "Token"}</span>
          <textarea
            name="token"
            rows={2}
            value={token}
            onInput={(e) => setToken(e.currentTarget.value)}
            required={dev === false}
            placeholder="go run ./cmd/readmarkd token --user alice"
          />
        </label>
        <button type="submit" class="primary" disabled={busy || dev === null}>
          Sign in
        </button>
      </form>
      {dev === false && (
        <p class="muted small">
          Start the server with <code>--dev-tokens</code> to sign in with just a user ID.
        </p>
      )}
      {error && (
        <p class="alert" role="alert">
          {error}
        </p>
      )}
    </main>
  );
}

function Chat(props: { session: Session; onSignOut: () => void }) {
  const [store] = useState(() => new Store(props.session.userID));
  const [state, setState] = useState<"connecting" | "ready" | string>("connecting");
  useStore(store);

  useEffect(() => {
    let client: Client | null = null;
    let closed = false;
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
    Client.dial(url, props.session.userID, props.session.token, { listeners: [store.listener], sdk: "readmark-demo" })
      .then((c) => {
        if (closed) {
          void c.close();
          return;
        }
        client = c;
        store.client = c;
        setState("ready");
      })
      .catch((err) => setState(describe(err)));
    return () => {
      closed = true;
      void client?.close();
    };
  }, [store]);

  if (state !== "ready") {
    return (
      <main class="signin panel" aria-busy={state === "connecting"}>
        <h1>
          <Brand title="Readmark demo chat" />
        </h1>
        {state === "connecting" ? (
          <p role="status">Connecting as {props.session.userID}…</p>
        ) : (
          <>
            <p class="alert" role="alert">
              {state}
            </p>
            <button type="button" onClick={props.onSignOut}>
              Back to sign in
            </button>
          </>
        )}
      </main>
    );
  }
  const open = store.convs.get(store.openKey);
  return (
    <div class={`chat-app ${open ? "has-open" : ""}`}>
      <aside class="sidebar" aria-label="Conversations">
        <header class="side-head">
          <Brand title="Readmark" />
          <span class="me">
            <span class={`dot ${store.connected ? "on" : "off"}`} aria-hidden="true" />
            <span data-testid="me">{store.userID}</span>
            <span class="visually-hidden" role="status">
              {store.connected ? "connected" : "reconnecting"}
            </span>
          </span>
          <button type="button" class="link small" onClick={props.onSignOut}>
            Sign out
          </button>
        </header>
        <ConvList store={store} />
        <NewConversation store={store} />
      </aside>
      {open ? (
        <ChatPane key={open.key} store={store} conv={open} />
      ) : (
        <main class="chat-empty muted">
          <p>Pick a conversation, or start one.</p>
        </main>
      )}
    </div>
  );
}

function convTitle(c: Conv): string {
  return c.kind === "group" ? `# ${c.id}` : c.id;
}

function ConvList(props: { store: Store }) {
  const convs = props.store.sorted();
  if (convs.length === 0) return <p class="muted small side-pad">No conversations yet.</p>;
  return (
    <nav aria-label="Conversation list">
      <ul class="conv-list">
        {convs.map((c) => {
          const last = c.messages.at(-1);
          return (
            <li key={c.key}>
              <button
                type="button"
                class="conv"
                aria-current={c.key === props.store.openKey ? "true" : undefined}
                aria-label={`${convTitle(c)}${c.unread > 0 ? `, ${c.unread} unread` : ""}`}
                aria-describedby={`last-${c.key}`}
                onClick={() => props.store.open(c.key)}
              >
                <span class="avatar" aria-hidden="true">
                  {c.kind === "group" ? "#" : c.id.slice(0, 1).toUpperCase()}
                </span>
                <span class="conv-text">
                  <span class="conv-title">
                    {convTitle(c)}
                    {c.groupType && <span class="tag">{c.groupType}</span>}
                  </span>
                  <span class="conv-last" id={`last-${c.key}`}>{last ? `${last.isSelf ? "You" : last.sender}: ${last.text}` : " "}</span>
                </span>
                {c.unread > 0 && (
                  <span class="badge" aria-hidden="true">
                    {c.unread}
                  </span>
                )}
              </button>
            </li>
          );
        })}
      </ul>
    </nav>
  );
}

function NewConversation(props: { store: Store }) {
  const [peer, setPeer] = useState("");
  const [type, setType] = useState("Work");
  const [groupID, setGroupID] = useState("");
  const [name, setName] = useState("");
  const [members, setMembers] = useState("");
  const [join, setJoin] = useState("");
  const [error, setError] = useState("");
  const run = (f: () => Promise<Conv>) => async (e: Event) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    try {
      const c = await f();
      setError("");
      form.closest("details")?.removeAttribute("open");
      for (const set of [setPeer, setGroupID, setName, setMembers, setJoin]) set("");
      props.store.open(c.key);
    } catch (err) {
      setError(describe(err));
    }
  };
  const ids = (s: string) => s.split(/[\s,]+/).filter(Boolean);
  return (
    <section class="new-conv" aria-label="Start a conversation">
      <details>
        <summary>Chat with a user</summary>
        <form class="row" onSubmit={run(async () => props.store.ensure("c2c", peer.trim()))}>
          <label class="field grow">
            <span>User ID</span>
            <input name="peer" value={peer} onInput={(e) => setPeer(e.currentTarget.value)} required />
          </label>
          <button type="submit">Open chat</button>
        </form>
      </details>
      <details>
        <summary>Create a group</summary>
        <form class="field-stack" onSubmit={run(() => props.store.createGroup(type, groupID.trim(), name.trim(), ids(members)))}>
          <div class="row">
            <label class="field">
              <span>Type</span>
              <select name="type" value={type} onChange={(e) => setType(e.currentTarget.value)}>
                {groupTypes.map((t) => (
                  <option key={t}>{t}</option>
                ))}
              </select>
            </label>
            <label class="field grow">
              <span>Group ID (optional)</span>
              <input name="group-id" value={groupID} onInput={(e) => setGroupID(e.currentTarget.value)} />
            </label>
          </div>
          <label class="field">
            <span>Name</span>
            <input name="group-name" value={name} onInput={(e) => setName(e.currentTarget.value)} />
          </label>
          <label class="field">
            <span>Members (user IDs, comma separated)</span>
            <input name="members" value={members} onInput={(e) => setMembers(e.currentTarget.value)} />
          </label>
          <button type="submit">Create group</button>
        </form>
      </details>
      <details>
        <summary>Join a group</summary>
        <form class="row" onSubmit={run(() => props.store.joinGroup(join.trim()))}>
          <label class="field grow">
            <span>Group ID</span>
            <input name="join" value={join} onInput={(e) => setJoin(e.currentTarget.value)} required />
          </label>
          <button type="submit">Join</button>
        </form>
      </details>
      {error && (
        <p class="alert small" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}

function ChatPane(props: { store: Store; conv: Conv }) {
  const { store, conv } = props;
  const [error, setError] = useState("");
  const [readers, setReaders] = useState<Message | null>(null);
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), []);

  const attempt = async (f: () => Promise<void>): Promise<boolean> => {
    try {
      await f();
      setError("");
      return true;
    } catch (err) {
      setError(describe(err));
      return false;
    }
  };
  return (
    <main class="chat" aria-labelledby="chat-title">
      <header class="chat-head">
        <button type="button" class="back" onClick={() => store.open("")} aria-label="Back to conversations">
          ←
        </button>
        <div class="chat-title-wrap">
          <h1 id="chat-title" tabIndex={-1} ref={heading}>
            {convTitle(conv)}
          </h1>
          <p class="muted small" aria-live="polite" data-testid="peer-read">
            {conv.kind === "group"
              ? `${conv.groupType ?? "Group"} group${conv.left ? " (you left)" : ""}`
              : conv.peerReadTime > 0
                ? `${conv.id} read your messages up to ${clock(conv.peerReadTime)}`
                : "One-to-one chat"}
          </p>
        </div>
        {conv.kind === "c2c" && (
          <button type="button" onClick={() => void attempt(() => store.markAllRead(conv))}>
            Mark all read
          </button>
        )}
      </header>
      <MessageList store={store} conv={conv} onShowReaders={setReaders} />
      {error && (
        <p class="alert chat-error" role="alert">
          {error}
        </p>
      )}
      <Composer onSend={(text, receipt) => attempt(() => store.send(conv, text, receipt))} />
      {readers && <ReadersDialog store={store} msg={readers} onClose={() => setReaders(null)} />}
    </main>
  );
}

function MessageList(props: { store: Store; conv: Conv; onShowReaders: (m: Message) => void }) {
  const { store, conv } = props;
  const list = useRef<HTMLOListElement>(null);
  const [visible, setVisible] = useState(document.visibilityState === "visible");
  useEffect(() => {
    const f = () => setVisible(document.visibilityState === "visible");
    document.addEventListener("visibilitychange", f);
    return () => document.removeEventListener("visibilitychange", f);
  }, []);

  // Acknowledge incoming messages that come into view (batched by the store).
  useEffect(() => {
    const root = list.current;
    if (!root || !visible) return;
    const byID = new Map(conv.messages.map((m) => [m.msgID, m]));
    const io = new IntersectionObserver(
      (entries) => {
        for (const e of entries) {
          const m = byID.get((e.target as HTMLElement).dataset.msgid ?? "");
          if (e.isIntersecting && m) store.seen(m);
        }
      },
      { root, threshold: 0.5 },
    );
    root.querySelectorAll<HTMLElement>("[data-ack='pending']").forEach((el) => io.observe(el));
    return () => io.disconnect();
  }, [conv.messages.length, visible]);

  // Keep the newest message in view when it arrives, if the user was at the bottom.
  const atBottom = useRef(true);
  useEffect(() => {
    const el = list.current;
    if (el && atBottom.current) el.scrollTop = el.scrollHeight;
  }, [conv.messages.length]);

  return (
    <ol
      class="messages"
      ref={list}
      role="log"
      aria-label={`Messages in ${convTitle(conv)}`}
      tabIndex={0}
      onScroll={(e) => {
        const el = e.currentTarget;
        atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
      }}
    >
      {!conv.historyLoaded && conv.messages.length === 0 && <li class="muted small">Loading…</li>}
      {conv.historyLoaded && conv.messages.length === 0 && <li class="muted small">No messages yet. Say hello!</li>}
      {conv.messages.map((m) => (
        <MessageItem key={m.msgID} store={store} conv={conv} m={m} onShowReaders={props.onShowReaders} />
      ))}
    </ol>
  );
}

function MessageItem(props: { store: Store; conv: Conv; m: Message; onShowReaders: (m: Message) => void }) {
  const { store, conv, m } = props;
  const pending = !m.isSelf && m.needReadReceipt && !m.receiptSent;
  return (
    <li class={`msg ${m.isSelf ? "self" : "other"}`} data-msgid={m.msgID} data-ack={pending ? "pending" : undefined}>
      <div class="bubble">
        {!m.isSelf && <span class="sender">{m.sender}</span>}
        <span class="text">{m.text}</span>
      </div>
      <div class="meta">
        <time dateTime={new Date(m.timestamp).toISOString()}>{clock(m.timestamp)}</time>
        {m.isSelf && m.needReadReceipt && <ReceiptStatus store={store} conv={conv} m={m} onShowReaders={props.onShowReaders} />}
        {!m.isSelf && m.needReadReceipt && <span class="small">{m.receiptSent ? "receipt sent" : "receipt requested"}</span>}
      </div>
    </li>
  );
}

function ReceiptStatus(props: { store: Store; conv: Conv; m: Message; onShowReaders: (m: Message) => void }) {
  const r = props.store.receipts.get(props.m.msgID);
  if (props.conv.kind === "group") {
    const label = r ? `${r.readCount} read · ${r.unreadCount} unread` : "…";
    return (
      <button
        type="button"
        class="receipt link"
        aria-live="polite"
        aria-haspopup="dialog"
        data-testid="receipt-count"
        onClick={() => props.onShowReaders(props.m)}
      >
        {label}
      </button>
    );
  }
  const read = (r?.isPeerRead ?? false) || (props.conv.peerReadTime > 0 && props.conv.peerReadTime >= props.m.timestamp);
  return (
    <span class={`receipt ${read ? "read" : ""}`} aria-live="polite" data-testid="receipt-c2c">
      {read ? "Read" : "Unread"}
    </span>
  );
}

function ReadersDialog(props: { store: Store; msg: Message; onClose: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    ref.current?.showModal();
  }, []);
  const r = props.store.receipts.get(props.msg.msgID);
  const load = (filter: typeof ReadMembersFilterRead) => async (next: number) =>
    props.store.client.getGroupMessageReadMemberList(props.msg, filter, next, pageSize).then((p) => ({
      members: p.members.map((x) => ({ userID: x.userID, nickName: x.nickName, readTime: x.readTime })),
      nextSeq: p.nextSeq,
      isFinished: p.isFinished,
    }));
  return (
    <dialog ref={ref} class="readers panel" aria-labelledby="readers-h" onClose={props.onClose}>
      <header class="dialog-head">
        <h2 id="readers-h">Who read “{props.msg.text}”</h2>
        <button type="button" onClick={() => ref.current?.close()} aria-label="Close">
          ✕
        </button>
      </header>
      <div class="lists">
        <MemberList label={`Read (${r?.readCount ?? "…"})`} showTime load={load(ReadMembersFilterRead)} />
        <MemberList label={`Unread (${r?.unreadCount ?? "…"})`} showTime={false} load={load(ReadMembersFilterUnread)} />
      </div>
    </dialog>
  );
}

function Composer(props: { onSend: (text: string, receipt: boolean) => Promise<boolean> }) {
  const [text, setText] = useState("");
  const [receipt, setReceipt] = useState(true);
  const [busy, setBusy] = useState(false);
  return (
    <form
      class="composer"
      onSubmit={async (e) => {
        e.preventDefault();
        if (!text.trim()) return;
        setBusy(true);
        if (await props.onSend(text, receipt)) setText("");
        setBusy(false);
      }}
    >
      <label class="visually-hidden" for="compose">
        Message
      </label>
      <input
        id="compose"
        name="message"
        autoComplete="off"
        placeholder="Write a message"
        value={text}
        onInput={(e) => setText(e.currentTarget.value)}
      />
      <label class="receipt-toggle small">
        <input type="checkbox" name="receipt" checked={receipt} onChange={(e) => setReceipt(e.currentTarget.checked)} />
        Read receipt
      </label>
      <button type="submit" class="primary" disabled={busy}>
        Send
      </button>
    </form>
  );
}

render(<App />, document.getElementById("app")!);
