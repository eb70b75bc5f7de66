// The admin console: sign in with an admin token; read-receipt settings,
// the server at a glance, and message lookup with both member lists.
import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import "../shared/base.css";
import "./console.css";
import { Brand } from "../shared/brand";
import { bytes, dateTime, duration } from "../shared/format";
import { devToken, devTokensEnabled, HTTPError } from "../shared/http";
import { MemberList, pageSize } from "../shared/memberlist";
import { Admin, groupTypes, type LookupResult, type Overview } from "./api";

const tokenKey = "readmark.console.token";

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function App() {
  const [admin, setAdmin] = useState<Admin | null>(() => {
    const t = sessionStorage.getItem(tokenKey);
    return t ? new Admin(t) : null;
  });
  if (!admin) {
    return (
      <SignIn
        onSignedIn={(a) => {
          sessionStorage.setItem(tokenKey, a.token);
          setAdmin(a);
        }}
      />
    );
  }
  const signOut = () => {
    sessionStorage.removeItem(tokenKey);
    setAdmin(null);
  };
  return (
    <div class="console">
      <header class="topbar">
        <Brand title="Readmark console" />
        <button type="button" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main class="grid">
        <SettingsPanel admin={admin} onAuthError={signOut} />
        <OverviewPanel admin={admin} />
        <LookupPanel admin={admin} />
      </main>
    </div>
  );
}

function SignIn(props: { onSignedIn: (a: Admin) => void }) {
  const [token, setToken] = useState("");
  const [adminUser, setAdminUser] = useState("administrator");
  const [dev, setDev] = useState(false);
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    void devTokensEnabled().then(setDev);
  }, []);

  const tryToken = async (t: string) => {
    setBusy(true);
    try {
      const a = new Admin(t.trim());
      await a.getSettings();
      props.onSignedIn(a);
    } catch (err) {
      setError(errText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin panel">
      <h1>
        <Brand title="Readmark console" />
      </h1>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void tryToken(token);
        }}
        class="field-stack"
      >
        <label class="field" for="admin-token">
          <span>Admin token</span>
        </label>
        <textarea
          id="admin-token"
          rows={3}
          value={token}
          onInput={(e) => setToken(e.currentTarget.value)}
          placeholder="go run ./cmd/readmarkd token --user administrator"
          required
        />
        <button type="submit" class="primary" disabled={busy}>
          Sign in
        </button>
      </form>
      {dev && (
        <form
          class="row"
          onSubmit={(e) => {
            e.preventDefault();
            setBusy(true);
            devToken(adminUser.trim())
              .then(tryToken)
              .catch((err) => setError(errText(err)))
              .finally(() => setBusy(false));
          }}
        >
          <label class="field">
            <span>Admin user (dev tokens are on)</span>
            <input value={adminUser} onInput={(e) => setAdminUser(e.currentTarget.value)} required />
          </label>
          <button type="submit" disabled={busy}>
            Sign in with a dev token
          </button>
        </form>
      )}
      {error && (
        <p class="alert" role="alert">
          {error}
        </p>
      )}
    </main>
  );
}

function SettingsPanel(props: { admin: Admin; onAuthError: () => void }) {
  const [stored, setStored] = useState<string[] | null>(null);
  const [checked, setChecked] = useState<Set<string>>(new Set());
  const [status, setStatus] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    props.admin
      .getSettings()
      .then((s) => {
        setStored(s.read_receipt_group_types);
        setChecked(new Set(s.read_receipt_group_types));
      })
      .catch((err) => {
        if (err instanceof HTTPError && (err.status === 401 || err.status === 403)) props.onAuthError();
        setError(errText(err));
      });
  }, [props.admin]);

  const save = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setStatus("");
    try {
      const s = await props.admin.putSettings({ read_receipt_group_types: groupTypes.filter((t) => checked.has(t)) });
      setStored(s.read_receipt_group_types);
      setChecked(new Set(s.read_receipt_group_types));
      setError("");
      setStatus("Saved.");
    } catch (err) {
      setError(errText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="panel" aria-labelledby="settings-h">
      <h2 id="settings-h">Group read receipts</h2>
      <p class="muted small">
        Group types whose messages may ask for read receipts. C2C read receipts need no setting. Changes apply to new
        messages at once.
      </p>
      <form onSubmit={save}>
        <fieldset class="types" disabled={stored === null || busy}>
          <legend class="visually-hidden">Group types with read receipts</legend>
          {groupTypes.map((t) => (
            <label key={t} class="check">
              <input
                type="checkbox"
                name="group-type"
                value={t}
                checked={checked.has(t)}
                onChange={(e) => {
                  const next = new Set(checked);
                  if (e.currentTarget.checked) next.add(t);
                  else next.delete(t);
                  setChecked(next);
                }}
              />
              {t}
            </label>
          ))}
        </fieldset>
        <div class="row">
          <button type="submit" class="primary" disabled={stored === null || busy}>
            Save
          </button>
          <span role="status" class="ok">
            {status}
          </span>
        </div>
      </form>
      <p class="small" data-testid="stored-settings">
        Stored:{" "}
        {stored === null ? "…" : stored.length === 0 ? <em>none (group read receipts off)</em> : stored.join(", ")}
      </p>
      {error && (
        <p class="alert" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}

interface Reading {
  o: Overview;
  rate: number; // requests/s since the previous reading
  errRates: Map<string, number>;
}

const pollMs = 2000;

// failed tells whether a request result is a failure. Cancelled is not: it
// is a read the server stopped because its client had already gone.
function failed(code: string): boolean {
  return code !== "OK" && code !== "Cancelled";
}

function OverviewPanel(props: { admin: Admin }) {
  const [r, setR] = useState<Reading | null>(null);
  const [error, setError] = useState("");
  const prev = useRef<Overview | null>(null);

  useEffect(() => {
    let stop = false;
    let timer = 0;
    const tick = async () => {
      try {
        const o = await props.admin.overview();
        const p = prev.current;
        const dt = p ? (o.now_ms - p.now_ms) / 1000 : 0;
        const total = (x: Overview) => x.requests.reduce((n, q) => n + q.count, 0);
        const key = (q: { type: string; code: string }) => `${q.type} ${q.code}`;
        const errRates = new Map<string, number>();
        for (const q of o.requests) {
          if (!failed(q.code)) continue;
          const before = p?.requests.find((x) => key(x) === key(q))?.count ?? 0;
          errRates.set(key(q), dt > 0 ? (q.count - before) / dt : 0);
        }
        setR({ o, rate: p && dt > 0 ? (total(o) - total(p)) / dt : 0, errRates });
        prev.current = o;
        setError("");
      } catch (err) {
        setError(errText(err));
      }
      if (!stop) timer = window.setTimeout(tick, pollMs);
    };
    void tick();
    return () => {
      stop = true;
      clearTimeout(timer);
    };
  }, [props.admin]);

  const o = r?.o;
  const errors = o?.requests.filter((q) => failed(q.code)) ?? [];
  const cancelled = o?.requests.filter((q) => q.code === "Cancelled").reduce((n, q) => n + q.count, 0) ?? 0;
  const gc = o?.group_commits;
  return (
    <section class="panel" aria-labelledby="overview-h">
      <h2 id="overview-h">Server at a glance</h2>
      {!o ? (
        <p class="muted">Loading…</p>
      ) : (
        <>
          <dl class="stats">
            <Stat label="Sessions" value={String(o.sessions)} testid="stat-sessions" />
            <Stat label="Requests/s" value={r.rate.toFixed(1)} />
            <Stat label="Requests" value={String(o.requests.reduce((n, q) => n + q.count, 0))} />
            <Stat label="Pushes" value={String(o.pushes)} />
            <Stat label="Reads cancelled" value={String(cancelled)} testid="stat-cancelled" />
            <Stat label="Uptime" value={duration(o.uptime_ms)} />
            <Stat label="Memory" value={bytes(o.resident_memory_bytes)} />
          </dl>
          <p class="small">
            <strong>Version</strong> {o.version} ({o.go_version}) · <strong>Storage</strong> {o.storage} ·{" "}
            <strong>Started</strong> {dateTime(o.started_ms)}
          </p>
          <h3>Errors by request</h3>
          {errors.length === 0 ? (
            <p class="muted small">No request has failed since the start.</p>
          ) : (
            <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th>Request</th>
                  <th>Code</th>
                  <th class="num">Count</th>
                  <th class="num">/s</th>
                </tr>
              </thead>
              <tbody>
                {errors.map((q) => (
                  <tr key={q.type + q.code}>
                    <td>{q.type}</td>
                    <td>Code{q.code}</td>
                    <td class="num">{q.count}</td>
                    <td class="num">{(r.errRates.get(`${q.type} ${q.code}`) ?? 0).toFixed(2)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            </div>
          )}
          <h3>Group commits</h3>
          {gc && gc.count > 0 ? (
            <>
              <p class="small">
                {gc.count} commits, {(gc.sum / gc.count).toFixed(2)} writes per commit on average.
              </p>
              <Histogram bounds={gc.upper_bounds} buckets={gc.buckets} />
            </>
          ) : (
            <p class="muted small">No commit yet.</p>
          )}
        </>
      )}
      {error && (
        <p class="alert" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}

function Stat(props: { label: string; value: string; testid?: string }) {
  return (
    <div class="stat">
      <dt>{props.label}</dt>
      <dd data-testid={props.testid}>{props.value}</dd>
    </div>
  );
}

/** Histogram draws the non-cumulative counts of a cumulative Prometheus histogram. */
function Histogram(props: { bounds: number[]; buckets: number[] }) {
  const counts = props.buckets.map((c, i) => c - (i > 0 ? props.buckets[i - 1] : 0));
  const last = counts.reduce((l, c, i) => (c > 0 ? i : l), 0);
  const shown = counts.slice(0, last + 1);
  const max = Math.max(1, ...shown);
  return (
    <table class="hist" aria-label="Writes per group commit">
      <thead>
        <tr>
          <th>Writes</th>
          <th class="num">Commits</th>
          <th aria-hidden="true"></th>
        </tr>
      </thead>
      <tbody>
        {shown.map((c, i) => (
          <tr key={i}>
            <td>≤ {props.bounds[i]}</td>
            <td class="num">{c}</td>
            <td class="bar-cell" aria-hidden="true">
              <span class="bar" style={{ width: `${(100 * c) / max}%` }} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function LookupPanel(props: { admin: Admin }) {
  const [kind, setKind] = useState<"group" | "c2c">("group");
  const [groupID, setGroupID] = useState("");
  const [from, setFrom] = useState("");
  const [to, setTo] = useState("");
  const [ref, setRef] = useState("");
  const [result, setResult] = useState<LookupResult | null>(null);
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const [gen, setGen] = useState(0); // remounts the member lists on each lookup

  const lookup = async (e: Event) => {
    e.preventDefault();
    const q: Record<string, string> = kind === "group" ? { group_id: groupID.trim() } : { from: from.trim(), to: to.trim() };
    const r = ref.trim();
    if (/^\d+$/.test(r)) q.seq = r;
    else q.msg_id = r;
    setBusy(true);
    try {
      setResult(await props.admin.lookup(q));
      setGen((g) => g + 1);
      setError("");
    } catch (err) {
      setResult(null);
      setError(errText(err));
    } finally {
      setBusy(false);
    }
  };
  const m = result?.message;
  const rc = result?.receipt;
  return (
    <section class="panel wide" aria-labelledby="lookup-h">
      <h2 id="lookup-h">Message lookup</h2>
      <form class="row" onSubmit={lookup}>
        <label class="field">
          <span>Conversation</span>
          <select value={kind} onChange={(e) => setKind(e.currentTarget.value as "group" | "c2c")}>
            <option value="group">Group</option>
            <option value="c2c">C2C</option>
          </select>
        </label>
        {kind === "group" ? (
          <label class="field">
            <span>Group ID</span>
            <input value={groupID} onInput={(e) => setGroupID(e.currentTarget.value)} required />
          </label>
        ) : (
          <>
            <label class="field">
              <span>User</span>
              <input value={from} onInput={(e) => setFrom(e.currentTarget.value)} required />
            </label>
            <label class="field">
              <span>Other user</span>
              <input value={to} onInput={(e) => setTo(e.currentTarget.value)} required />
            </label>
          </>
        )}
        <label class="field">
          <span>Seq or message ID</span>
          <input value={ref} onInput={(e) => setRef(e.currentTarget.value)} required />
        </label>
        <button type="submit" class="primary" disabled={busy}>
          Look up
        </button>
      </form>
      {error && (
        <p class="alert" role="alert">
          {error}
        </p>
      )}
      {m && (
        <div class="lookup-result" aria-live="polite">
          <dl class="facts">
            <dt>Message</dt>
            <dd>
              <code>{m.msg_id}</code> · seq {m.seq}
            </dd>
            <dt>From</dt>
            <dd>
              {m.sender} → {m.group_id ? `group ${m.group_id}` : m.receiver}
            </dd>
            <dt>Sent</dt>
            <dd>{dateTime(m.time_ms)}</dd>
            <dt>Content</dt>
            <dd>{m.text ? m.text : `${m.custom_data_bytes ?? 0} bytes of custom data`}</dd>
            <dt>Read receipt</dt>
            <dd data-testid="lookup-receipt">
              {!m.need_read_receipt
                ? "not requested"
                : m.group_id
                  ? `${rc?.read_count ?? 0} read · ${rc?.unread_count ?? 0} unread`
                  : rc?.is_peer_read
                    ? `read${rc.peer_read_time_ms ? ` (conversation read at ${dateTime(rc.peer_read_time_ms)})` : ""}`
                    : "unread"}
            </dd>
          </dl>
          {m.group_id && m.need_read_receipt && (
            <div class="lists" key={gen}>
              <MemberList
                label={`Read (${rc?.read_count ?? 0})`}
                showTime
                load={(next) => loadMembers(props.admin, m.group_id!, m.seq, "read", next)}
              />
              <MemberList
                label={`Unread (${rc?.unread_count ?? 0})`}
                showTime={false}
                load={(next) => loadMembers(props.admin, m.group_id!, m.seq, "unread", next)}
              />
            </div>
          )}
        </div>
      )}
    </section>
  );
}

async function loadMembers(admin: Admin, group: string, seq: number, filter: "read" | "unread", next: number) {
  const p = await admin.readMembers(group, seq, filter, next, pageSize);
  return {
    members: p.members.map((x) => ({ userID: x.user_id, nickName: x.nick_name, readTime: x.read_time_ms })),
    nextSeq: p.next_seq,
    isFinished: p.is_finished,
  };
}

render(<App />, document.getElementById("app")!);
