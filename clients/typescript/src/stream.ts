// GenerateStream: the chunks of one streamed generate as an AsyncIterable, and its final
// result. The request is sent when the iteration starts. Leaving the loop early (break, return,
// throw) sends `cancel` and `result` resolves with what droverd answers for the cancelled
// generation (finish_reason "cancelled"); an aborted signal sends `cancel` and rejects both the
// iteration and `result` with an AbortError.
import type { Connection } from './connection.js';
import { abortError, clientTimeout } from './errors.js';
import type { CallOptions, Chunk, GenerateResult } from './types.js';

type Outcome = { ok: true; value: GenerateResult } | { ok: false; error: Error };

export class GenerateStream implements AsyncIterableIterator<Chunk> {
  /** Settles with the final result (or error) of the generation. */
  readonly result: Promise<GenerateResult>;
  private settle!: (o: Outcome) => void;
  private readonly queue: Chunk[] = [];
  private outcome: Outcome | undefined;
  private wake: (() => void) | undefined;
  private conn: Connection | undefined;
  private id = 0;
  private started = false;
  private leaving = false;  // the consumer left: chunks are dropped
  private holding = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly onAbort = () => this.abort();

  constructor(
    private readonly connect: () => Promise<Connection>,
    private readonly params: object,
    private readonly options: CallOptions,
    private readonly maxBufferedChunks: number,
  ) {
    this.result = new Promise<GenerateResult>((resolve, reject) => {
      this.settle = (o) => (o.ok ? resolve(o.value) : reject(o.error));
    });
    this.result.catch(() => {});  // a caller that only iterates is told by the iteration
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<Chunk, undefined>> {
    if (!this.started) await this.start();
    for (;;) {
      const chunk = this.queue.shift();
      if (chunk) {
        if (this.holding && this.queue.length <= this.maxBufferedChunks / 2) {
          this.holding = false;
          this.conn?.release(this);
        }
        return { value: chunk, done: false };
      }
      if (this.outcome) {
        if (!this.outcome.ok) throw this.outcome.error;
        return { value: undefined, done: true };
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /** Called when a `for await` loop is left early: cancels the generation at droverd. */
  async return(): Promise<IteratorResult<Chunk, undefined>> {
    this.leaving = true;
    this.queue.length = 0;
    this.unhold();
    if (!this.started) {
      this.started = true;
      this.finish({ ok: false, error: abortError(AbortSignal.abort()) });
    } else if (!this.outcome && this.conn) {
      this.conn.cancel(this.id, true);
    }
    return { value: undefined, done: true };
  }

  private async start(): Promise<void> {
    this.started = true;
    const { signal, timeoutMs } = this.options;
    if (signal?.aborted) return this.finish({ ok: false, error: abortError(signal) });
    try {
      this.conn = await this.connect();
      await this.conn.writable();
    } catch (e) {
      return this.finish({ ok: false, error: e as Error });
    }
    if (signal?.aborted) return this.finish({ ok: false, error: abortError(signal) });
    signal?.addEventListener('abort', this.onAbort, { once: true });
    if (timeoutMs !== undefined) {
      this.timer = setTimeout(() => {
        this.conn?.cancel(this.id);
        this.finish({ ok: false, error: clientTimeout(timeoutMs) });
      }, timeoutMs);
    }
    this.id = this.conn.send('generate', { ...this.params, stream: true }, {
      onChunk: (chunk) => this.push(chunk),
      resolve: (value) => this.finish({ ok: true, value: value as GenerateResult }),
      reject: (error) => this.finish({ ok: false, error }),
    });
  }

  private push(chunk: Chunk): void {
    if (this.leaving || this.outcome) return;
    this.queue.push(chunk);
    if (!this.holding && this.queue.length >= this.maxBufferedChunks) {
      this.holding = true;
      this.conn?.hold(this);
    }
    this.wakeUp();
  }

  private abort(): void {
    if (this.outcome) return;
    this.conn?.cancel(this.id);
    this.queue.length = 0;
    this.finish({ ok: false, error: abortError(this.options.signal!) });
  }

  private finish(outcome: Outcome): void {
    if (this.outcome) return;
    this.outcome = outcome;
    clearTimeout(this.timer);
    this.options.signal?.removeEventListener('abort', this.onAbort);
    this.unhold();
    this.settle(outcome);
    this.wakeUp();
  }

  private unhold(): void {
    if (this.holding) {
      this.holding = false;
      this.conn?.release(this);
    }
  }

  private wakeUp(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
