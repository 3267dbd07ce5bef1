// Connection: one socket to droverd, newline-delimited JSON both ways. Numbers its requests,
// hands each reply and generate.chunk to the call it belongs to, and fails every call in
// flight with ConnectionLostError when the socket closes. Never re-sends anything (the client
// decides that, client.ts).
//
// Bounded buffering: a stream whose consumer lags holds its connection's reading
// (hold()/release()): dispatching stops (the rest of the current read waits as it is) and the
// socket is paused, so unread chunks wait in the kernel and then at droverd (which coalesces
// them, and refuses the stream with -32010 past its own limit) instead of growing here; and
// requests wait for the socket to drain (writable()) once more than kWriteHighWater bytes are
// queued for it.
import type net from 'node:net';

import { type Address, type TlsMaterial, connectSocket } from './address.js';
import { ConnectionLostError, DroverConnectionError, DroverError } from './errors.js';
import type { Chunk } from './types.js';

export interface Pending {
  onChunk?: (chunk: Chunk) => void;
  resolve: (result: unknown) => void;
  reject: (error: Error) => void;
}

const kWriteHighWater = 1 << 20;

export class Connection {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private partial: Buffer[] = [];
  private partialBytes = 0;
  private readonly holders = new Set<object>();
  private backlog: Buffer | undefined;  // bytes read while held, not yet dispatched
  private lostReason: Error | undefined;
  private closedFlag = false;
  /** Its droverd is draining: no new calls go to it (it closes once they are answered). */
  retired = false;

  private constructor(
    private readonly socket: net.Socket,
    readonly path: string,
    private readonly maxMessageBytes: number,
  ) {
    socket.on('data', (data: Buffer) => this.onData(data));
    socket.on('error', (e) => {
      this.lostReason ??= e;
    });
    socket.on('close', () => this.onClose());
  }

  /** One connection attempt (its TLS handshake included). */
  static open(address: Address, tls: TlsMaterial, maxMessageBytes: number): Promise<Connection> {
    const path = address.text;
    return new Promise((resolve, reject) => {
      const { socket, ready } = connectSocket(address, tls);
      const onError = (e: Error) => {
        socket.destroy();
        reject(new DroverConnectionError(`cannot connect to droverd at ${path}: ${e.message}`, path, { cause: e }));
      };
      socket.once('error', onError);
      socket.once(ready, () => {
        socket.off('error', onError);
        resolve(new Connection(socket, path, maxMessageBytes));
      });
    });
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Calls sent and not yet answered. */
  get inflight(): number {
    return this.pending.size;
  }

  /** Resolves once the socket's queue is below the high-water mark (at once, usually). */
  async writable(): Promise<void> {
    while (!this.closedFlag && this.socket.writableLength > kWriteHighWater) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.socket.off('drain', done);
          this.socket.off('close', done);
          resolve();
        };
        this.socket.on('drain', done);
        this.socket.on('close', done);
      });
    }
  }

  /** Sends a request; `pending` gets its chunks and its answer. Returns the request id. */
  send(method: string, params: unknown, pending: Pending): number {
    if (this.closedFlag) {
      pending.reject(this.lostError());
      return 0;
    }
    const id = this.nextId++;
    this.pending.set(id, pending);
    this.socket.write(encode(id, method, params));
    return id;
  }

  /** Asks droverd to cancel call `id`. `keepListening`: its final answer still goes to the
   *  call (a cancelled generate answers with what it produced); otherwise it is dropped. */
  cancel(id: number, keepListening = false): void {
    if (!keepListening) this.pending.delete(id);
    if (!this.closedFlag) this.socket.write(encode(this.nextId++, 'cancel', { id }));
  }

  /** `holder` (a stream) has too many unread chunks: stop reading until it releases. */
  hold(holder: object): void {
    this.holders.add(holder);
    this.socket.pause();
  }

  release(holder: object): void {
    if (!this.holders.delete(holder) || this.holders.size > 0 || this.closedFlag) return;
    const backlog = this.backlog;
    this.backlog = undefined;
    if (backlog) this.onData(backlog);  // may hold again
    if (this.holders.size === 0 && !this.closedFlag) this.socket.resume();
  }

  close(): Promise<void> {
    if (this.closedFlag) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve());
      this.lostReason ??= new Error('client closed');
      this.socket.destroy();
    });
  }

  private onData(data: Buffer): void {
    let start = 0;
    for (let nl = data.indexOf(10); nl >= 0; nl = data.indexOf(10, start)) {
      let line = data.subarray(start, nl);
      if (this.partial.length > 0) {
        this.partial.push(line);
        line = Buffer.concat(this.partial);
        this.partial = [];
        this.partialBytes = 0;
      }
      start = nl + 1;
      if (line.length > 0 && !this.dispatch(line)) return;
      if (this.holders.size > 0 && start < data.length) {
        // A stream is full: the rest of this read waits until it is released.
        this.backlog = data.subarray(start);
        return;
      }
    }
    if (start < data.length) {
      this.partialBytes += data.length - start;
      this.partial.push(data.subarray(start));
      if (this.partialBytes > this.maxMessageBytes) {
        this.fail(new Error(`a message from droverd exceeds ${this.maxMessageBytes} bytes`));
      }
    }
  }

  // False when the connection failed (the rest of the data is not read).
  private dispatch(line: Buffer): boolean {
    let message: any;
    try {
      message = JSON.parse(line.toString('utf8'));
    } catch (e) {
      this.fail(new Error(`droverd sent text that is not JSON: ${(e as Error).message}`));
      return false;
    }
    if (message === null || typeof message !== 'object') return true;
    if (typeof message.method === 'string') {
      const params = message.params;
      if (message.method === 'generate.chunk' && params && typeof params === 'object') {
        this.pending.get(params.id)?.onChunk?.(params as Chunk);
      }
      return true;
    }
    const call = this.pending.get(message.id);
    if (!call) return true;  // a cancelled call's late answer, or a cancel's own
    this.pending.delete(message.id);
    if ('error' in message) {
      call.reject(DroverError.fromReply(message.error));
    } else {
      call.resolve(message.result);
    }
    return true;
  }

  private fail(reason: Error): void {
    this.lostReason ??= reason;
    this.socket.destroy();
  }

  private onClose(): void {
    this.closedFlag = true;
    this.holders.clear();
    const calls = [...this.pending.values()];
    this.pending.clear();
    const error = this.lostError();
    for (const call of calls) call.reject(error);
  }

  private lostError(): ConnectionLostError {
    const detail = this.lostReason ? `: ${this.lostReason.message}` : '';
    return new ConnectionLostError(`connection to ${this.path} lost${detail}`, this.path, { cause: this.lostReason });
  }
}

function encode(id: number, method: string, params: unknown): string {
  return JSON.stringify(params === undefined ? { jsonrpc: '2.0', id, method } : { jsonrpc: '2.0', id, method, params }) + '\n';
}
