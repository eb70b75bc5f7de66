// A paged list of a group message's read or unread members: the next page
// loads when the end of the list scrolls into view (or on "Load more", for
// the keyboard).
import { useEffect, useRef, useState } from "preact/hooks";
import { clock } from "./format";

export interface Member {
  userID: string;
  nickName?: string;
  readTime: number; // Unix ms; 0 in the unread list
}

export interface Page {
  members: Member[];
  nextSeq: number;
  isFinished: boolean;
}

export const pageSize = 20;

export function MemberList(props: { label: string; load: (nextSeq: number) => Promise<Page>; showTime: boolean }) {
  const [members, setMembers] = useState<Member[]>([]);
  const [next, setNext] = useState(0);
  const [done, setDone] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const sentinel = useRef<HTMLLIElement>(null);
  const loading = useRef(false);

  const more = async () => {
    if (loading.current || done) return;
    loading.current = true;
    setBusy(true);
    try {
      const p = await props.load(next);
      setMembers((ms) => [...ms, ...p.members]);
      setNext(p.nextSeq);
      setDone(p.isFinished);
      setError("");
    } catch (err) {
      setError(String(err instanceof Error ? err.message : err));
    } finally {
      loading.current = false;
      setBusy(false);
    }
  };

  useEffect(() => {
    void more(); // the first page at once; the next ones as the end scrolls into view
  }, []);

  useEffect(() => {
    const el = sentinel.current;
    if (!el || done || error || members.length === 0) return;
    const io = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) void more();
    });
    io.observe(el);
    return () => io.disconnect();
  }, [next, done, error, busy]);

  return (
    <section class="members" aria-label={props.label}>
      <h3>{props.label}</h3>
      <ul class="member-list" aria-busy={busy}>
        {members.map((m) => (
          <li key={m.userID} class="member">
            <span class="avatar" aria-hidden="true">
              {(m.nickName || m.userID).slice(0, 1).toUpperCase()}
            </span>
            <span class="member-name">
              {m.nickName ? `${m.nickName} (${m.userID})` : m.userID}
            </span>
            {props.showTime && m.readTime > 0 && (
              <time class="member-time" dateTime={new Date(m.readTime).toISOString()}>
                read {clock(m.readTime)}
              </time>
            )}
          </li>
        ))}
        {done && members.length === 0 && <li class="muted">Nobody</li>}
        {!done && (
          <li ref={sentinel} class="member-more">
            <button type="button" class="link" onClick={() => void more()} disabled={busy}>
              {busy ? "Loading…" : "Load more"}
            </button>
          </li>
        )}
      </ul>
      {error && (
        <p class="alert" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}
