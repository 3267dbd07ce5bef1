// Errors of drover-client (docs/API.md, "Errors").
//
// DroverError is an error droverd answered (its JSON-RPC error object), or a client-side
// deadline, which uses droverd's own timeout code so callers handle both alike. Transport
// failures are DroverConnectionError: a connection that cannot be opened, or
// ConnectionLostError for calls that were in flight when it dropped (they may or may not have
// run; the client never re-sends them). An aborted signal rejects with a DOMException named
// "AbortError", as fetch() does.

/** JSON-RPC 2.0 codes and drover's own (common/error_codes.hpp). */
export const ErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  Overloaded: -32001,
  NoHealthyWorker: -32002,
  WorkerFailed: -32003,
  TimedOut: -32004,
  Cancelled: -32005,
  UnknownModel: -32006,
  MessageTooLarge: -32007,
  NotPermitted: -32008,
  ShuttingDown: -32009,
  SlowConsumer: -32010,
} as const;

/** An error answered by droverd: `code`, `message` and `data` as in the reply. */
export class DroverError extends Error {
  readonly code: number;
  readonly data: unknown;
  /** How long droverd asks to wait before retrying (-32001 overloaded, -32002 no healthy
   *  worker); undefined for other errors. */
  readonly retryAfterMs: number | undefined;

  constructor(code: number, message: string, data?: unknown) {
    super(message);
    this.name = 'DroverError';
    this.code = code;
    this.data = data;
    const retry = (data as { retry_after_ms?: unknown } | null | undefined)?.retry_after_ms;
    this.retryAfterMs = typeof retry === 'number' ? retry : undefined;
  }

  static fromReply(error: unknown): DroverError {
    const e = error as { code?: unknown; message?: unknown; data?: unknown } | null;
    if (!e || typeof e !== 'object' || typeof e.code !== 'number') {
      return new DroverError(ErrorCode.InternalError, `malformed error object: ${JSON.stringify(error)}`);
    }
    return new DroverError(e.code, typeof e.message === 'string' ? e.message : '', e.data);
  }
}

/** The error of a call whose client-side deadline passed (the call is cancelled at droverd). */
export function clientTimeout(timeoutMs: number): DroverError {
  return new DroverError(ErrorCode.TimedOut, 'Timed out', { timeout_ms: timeoutMs, source: 'client' });
}

/** droverd could not be reached at `socket`. */
export class DroverConnectionError extends Error {
  readonly socket: string;

  constructor(message: string, socket: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DroverConnectionError';
    this.socket = socket;
  }
}

/** The connection dropped while this call was in flight; it is not re-sent. */
export class ConnectionLostError extends DroverConnectionError {
  constructor(message: string, socket: string, options?: { cause?: unknown }) {
    super(message, socket, options);
    this.name = 'ConnectionLostError';
  }
}

export function abortError(signal: AbortSignal): DOMException {
  return new DOMException('The operation was aborted', { name: 'AbortError', cause: signal.reason });
}
