// DroverClient: droverd's client API over one or more connections (docs/API.md).
//
// Calls go to the open connection with the fewest calls in flight. A connection that drops
// fails its calls in flight with ConnectionLostError and is opened again, with backoff, when a
// new call needs it; a call waits up to connectTimeoutMs for a connection. With `retrySafe`,
// calls that are safe to repeat are sent again on a new connection instead (retry.ts).
import { type Address, type TlsMaterial, type TlsOptions, loadTls, parseAddress } from './address.js';
import { Connection } from './connection.js';
import { DroverConnectionError, abortError, clientTimeout } from './errors.js';
import { kDefaultRetryAttempts, mayResend, neverStarted } from './retry.js';
import { GenerateStream } from './stream.js';
import type { CallOptions, GenerateParams, GenerateResult, Health, ModelInfo } from './types.js';

/** droverctl's default socket and environment variable (ctl/main.cpp, common/run_paths.hpp). */
export const SOCKET_ENV = 'DROVER_SERVER_SOCKET';
export const SOCKET_NAME = 'drover.sock';

/** droverd's private run directory, by droverd's own rule: $XDG_RUNTIME_DIR/drover, else
 *  /run/drover as root, else $TMPDIR-or-/tmp/drover-<uid> (docs/SECURITY.md). */
export function defaultRunDir(): string {
  const xdg = process.env.XDG_RUNTIME_DIR;
  if (xdg) return `${xdg}/drover`;
  const uid = process.geteuid ? process.geteuid() : -1;
  if (uid === 0) return '/run/drover';
  return `${process.env.TMPDIR || '/tmp'}/drover-${uid}`;
}

export function defaultSocket(): string {
  return process.env[SOCKET_ENV] || `${defaultRunDir()}/${SOCKET_NAME}`;
}

export interface ConnectOptions {
  /** Where droverd listens: a Unix socket path, `tcp://HOST:PORT` or `tls://HOST:PORT`; default
   *  $DROVER_SERVER_SOCKET, else drover.sock in droverd's private run directory
   *  (defaultRunDir()). `socket` is its former name. */
  address?: string;
  socket?: string;
  /** For tls:// addresses: CA, client certificate and key files (mutual TLS), server name. */
  tls?: TlsOptions;
  /** Send a call whose connection failed again on a new connection when that is safe
   *  (retry.ts), up to retryAttempts sendings in all (default 3). Off by default. */
  retrySafe?: boolean;
  retryAttempts?: number;
  /** Connections to open, for concurrency (droverd answers each connection in order of
   *  completion, but limits the calls one connection may have in flight). Default 1. */
  connections?: number;
  /** How long opening a connection keeps retrying (backoff 50 ms doubling to 1 s). Default 10 s. */
  connectTimeoutMs?: number;
  /** Default client-side deadline of every call; none by default. */
  timeoutMs?: number;
  /** Unread chunks a stream may hold before its connection stops reading. Default 1024. */
  maxBufferedChunks?: number;
  /** Longest message accepted from droverd; a longer one fails the connection. Default 16 MiB. */
  maxMessageBytes?: number;
}

export class DroverClient {
  /** The address connected to (a socket path, tcp:// or tls://). */
  readonly socket: string;
  /** Calls sent again under retrySafe. */
  retries = 0;
  private readonly address: Address;
  private readonly tls: TlsMaterial;
  private readonly retrySafe: boolean;
  private readonly retryAttempts: number;
  private readonly retired = new Set<Connection>();  // still answering their calls
  private readonly conns: (Connection | undefined)[];
  private readonly connecting: (Promise<Connection> | undefined)[];
  private readonly connectTimeoutMs: number;
  private readonly timeoutMs: number | undefined;
  private readonly maxBufferedChunks: number;
  private readonly maxMessageBytes: number;
  private closed = false;

  private constructor(options: ConnectOptions) {
    this.socket = options.address ?? options.socket ?? defaultSocket();
    this.address = parseAddress(this.socket);
    this.tls = loadTls(options.tls);
    this.retrySafe = options.retrySafe ?? false;
    this.retryAttempts = Math.max(1, Math.floor(options.retryAttempts ?? kDefaultRetryAttempts));
    const n = Math.max(1, Math.floor(options.connections ?? 1));
    this.conns = new Array(n).fill(undefined);
    this.connecting = new Array(n).fill(undefined);
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.timeoutMs = options.timeoutMs;
    this.maxBufferedChunks = Math.max(1, options.maxBufferedChunks ?? 1024);
    this.maxMessageBytes = options.maxMessageBytes ?? 16 * 1024 * 1024;
  }

  /** Opens the connections; rejects with DroverConnectionError when droverd cannot be reached. */
  static async connect(options: ConnectOptions = {}): Promise<DroverClient> {
    const client = new DroverClient(options);
    try {
      await Promise.all(client.conns.map((_, i) => client.reconnect(i)));
    } catch (e) {
      await client.close();
      throw e;
    }
    return client;
  }

  /** Any method: resolves to its result, rejects with DroverError. */
  async call<T = unknown>(method: string, params?: unknown, options: CallOptions = {}): Promise<T> {
    const { signal, timeoutMs = this.timeoutMs } = options;
    const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
    for (let sent = 1; ; sent++) {
      if (signal?.aborted) throw abortError(signal);
      const conn = await this.pick();
      try {
        return await this.callOn<T>(conn, method, params, signal, timeoutMs, deadline);
      } catch (e) {
        const late = deadline !== undefined && Date.now() >= deadline;
        if (!this.retrySafe || sent >= this.retryAttempts || late || !mayResend(e, method, params)) throw e;
        this.retries++;
        if (neverStarted(e)) conn.retired = true;
      }
    }
  }

  // One sending of a call on `conn`; `deadline` (ms since the epoch) bounds it, `timeoutMs` is
  // what a client-side timeout reports.
  private async callOn<T>(conn: Connection, method: string, params: unknown, signal: AbortSignal | undefined,
    timeoutMs: number | undefined, deadline: number | undefined): Promise<T> {
    await conn.writable();
    if (signal?.aborted) throw abortError(signal);
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let settled = false;
      const onAbort = () => {
        done();
        conn.cancel(id);
        reject(abortError(signal!));
      };
      const done = () => {
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const id = conn.send(method, params, {
        resolve: (value) => {
          done();
          resolve(value as T);
        },
        reject: (error) => {
          done();
          reject(error);
        },
      });
      if (settled) return;  // the connection had closed: rejected already
      signal?.addEventListener('abort', onAbort, { once: true });
      if (timeoutMs !== undefined && deadline !== undefined) {
        timer = setTimeout(() => {
          done();
          conn.cancel(id);
          reject(clientTimeout(timeoutMs));
        }, Math.max(0, deadline - Date.now()));
      }
    });
  }

  generate(params: GenerateParams, options?: CallOptions): Promise<GenerateResult> {
    return this.call<GenerateResult>('generate', { ...params, stream: false }, options);
  }

  /** `for await (const chunk of client.stream(params))`; then `await stream.result`. */
  stream(params: GenerateParams, options: CallOptions = {}): GenerateStream {
    const withDefaults = { ...options, timeoutMs: options.timeoutMs ?? this.timeoutMs };
    return new GenerateStream(() => this.pick(), params, withDefaults, this.maxBufferedChunks);
  }

  async tokenize(params: { text: string; model?: string; priority?: string }, options?: CallOptions): Promise<number[]> {
    return (await this.call<{ tokens: number[] }>('tokenize', params, options)).tokens;
  }

  async detokenize(params: { tokens: number[]; model?: string }, options?: CallOptions): Promise<string> {
    return (await this.call<{ text: string }>('detokenize', params, options)).text;
  }

  health(options?: CallOptions): Promise<Health> {
    return this.call<Health>('health', undefined, options);
  }

  async models(options?: CallOptions): Promise<ModelInfo[]> {
    return (await this.call<{ models: ModelInfo[] }>('models.list', undefined, options)).models;
  }

  /** Calls in flight over all connections. */
  get inflight(): number {
    return this.conns.reduce((n, c) => n + (c && !c.closed ? c.inflight : 0), 0);
  }

  /** Closes every connection; calls in flight reject with ConnectionLostError. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.conns, ...this.retired].map((c) => c?.close()));
  }

  private async pick(): Promise<Connection> {
    if (this.closed) throw new DroverConnectionError('client is closed', this.socket);
    let best: Connection | undefined;
    const dead: number[] = [];
    for (const c of this.retired) if (c.closed) this.retired.delete(c);
    this.conns.forEach((c, i) => {
      if (c?.retired && !c.closed) {
        this.retired.add(c);  // droverd closes it once its calls are answered
        this.conns[i] = undefined;
      }
      c = this.conns[i];
      if (!c || c.closed) dead.push(i);
      else if (!best || c.inflight < best.inflight) best = c;
    });
    if (best) {
      for (const i of dead) this.reconnect(i).catch(() => {});  // back in the pool once open
      return best;
    }
    try {
      return await Promise.any(dead.map((i) => this.reconnect(i)));
    } catch (e) {
      throw (e as AggregateError).errors?.[0] ?? e;
    }
  }

  // Opens slot i's connection, retrying with backoff until connectTimeoutMs; one attempt loop
  // per slot at a time, shared by every call that waits for it.
  private reconnect(i: number): Promise<Connection> {
    this.connecting[i] ??= (async () => {
      const deadline = Date.now() + this.connectTimeoutMs;
      let delay = 50;
      try {
        for (;;) {
          try {
            const conn = await Connection.open(this.address, this.tls, this.maxMessageBytes);
            if (this.closed) {
              await conn.close();
              throw new DroverConnectionError('client is closed', this.socket);
            }
            this.conns[i] = conn;
            return conn;
          } catch (e) {
            const left = deadline - Date.now();
            if (this.closed || left <= 0) throw e;
            await new Promise((resolve) => setTimeout(resolve, Math.min(delay, left)));  // backoff
            delay = Math.min(delay * 2, 1000);
          }
        }
      } finally {
        this.connecting[i] = undefined;
      }
    })();
    return this.connecting[i]!;
  }
}
