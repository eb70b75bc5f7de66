import { CodeUnavailable, codeNames } from "./codes.js";

/**
 * ReadmarkError is every failure of the SDK: one the server reported, or one
 * the SDK detected before a request could be sent (CodeInvalidArgument,
 * CodeTooMany, CodeMessageTooLarge) or answered (CodeUnavailable: the
 * connection was lost, the client closed, the call timed out or was aborted).
 * code is one of the exported Code* constants; docs/errors.md explains each.
 */
export class ReadmarkError extends Error {
  readonly code: number;
  readonly desc: string;

  constructor(code: number, desc: string, options?: { cause?: unknown }) {
    const name = codeNames[code] ?? "Code";
    super(desc ? `readmark: ${name} (${code}): ${desc}` : `readmark: ${name} (${code})`, options);
    this.name = "ReadmarkError";
    this.code = code;
    this.desc = desc;
  }
}

/** unavailable is the error of a request cut off by a lost connection. */
export function unavailable(desc: string, cause?: unknown): ReadmarkError {
  return new ReadmarkError(CodeUnavailable, desc, cause === undefined ? undefined : { cause });
}
