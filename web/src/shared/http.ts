// JSON calls to readmarkd's HTTP endpoints (admin API, dev tokens), same
// origin as the page.

/** HTTPError is a failed call: the server's {code, desc}, or a network failure (code 0). */
export class HTTPError extends Error {
  constructor(
    readonly status: number,
    readonly code: number,
    readonly desc: string,
  ) {
    super(code ? `${desc} (code ${code})` : desc);
  }
}

/** call sends a JSON request and returns the decoded JSON answer. */
export async function call<T>(method: string, path: string, opts: { token?: string; body?: unknown } = {}): Promise<T> {
  const headers: Record<string, string> = {};
  if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  let resp: Response;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
  } catch (err) {
    throw new HTTPError(0, 0, `cannot reach the server: ${String(err)}`);
  }
  const text = await resp.text();
  let data: unknown;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = undefined;
  }
  if (!resp.ok) {
    const e = (data ?? {}) as { code?: number; desc?: string };
    throw new HTTPError(resp.status, e.code ?? 0, e.desc ?? `${resp.status} ${resp.statusText}`);
  }
  return data as T;
}

/** devTokensEnabled asks whether the server mints development tokens (--dev-tokens). */
export async function devTokensEnabled(): Promise<boolean> {
  try {
    const c = await call<{ dev_tokens: boolean }>("GET", "/v1/dev/config");
    return c.dev_tokens;
  } catch {
    return false;
  }
}

/** devToken mints a token for userID (only with --dev-tokens). */
export async function devToken(userID: string): Promise<string> {
  const r = await call<{ token: string }>("POST", "/v1/dev/token", { body: { user_id: userID } });
  return r.token;
}
