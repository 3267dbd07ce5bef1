// Which failed calls the client may send again on a new connection when `retrySafe` is on
// (docs/API.md, "What the client libraries add"); the same rule as the Python client's.
//
// - A call droverd refused before starting it because it is draining (-32009 with
//   `data.started === false`) never ran: any method may be sent again, to another droverd.
// - A call whose connection broke while it was in flight may have run. It is sent again only if
//   running it twice is harmless and gives the same answer: `generate` with a `seed` (not
//   streamed: its chunks may have been handed out already), `tokenize`, `detokenize`, and the
//   read-only `health` and `models.list`.
import { ConnectionLostError, DroverError, ErrorCode } from './errors.js';

const kSafeMethods = new Set(['tokenize', 'detokenize', 'health', 'models.list']);
export const kDefaultRetryAttempts = 3;  // the first sending and two more

export function safeToRepeat(method: string, params: unknown): boolean {
  if (kSafeMethods.has(method)) return true;
  const p = params as { seed?: unknown; stream?: unknown } | null | undefined;
  return method === 'generate' && p != null && typeof p === 'object' && p.seed != null && !p.stream;
}

/** droverd refused the call at admission because it is draining: it did not run. */
export function neverStarted(error: unknown): boolean {
  return error instanceof DroverError && error.code === ErrorCode.ShuttingDown &&
    (error.data as { started?: unknown } | null | undefined)?.started === false;
}

export function mayResend(error: unknown, method: string, params: unknown): boolean {
  return neverStarted(error) || (error instanceof ConnectionLostError && safeToRepeat(method, params));
}
