// Params and results of droverd's client methods, as built (docs/API.md).

export type Priority = 'high' | 'normal' | 'low';

export interface GenerateParams {
  prompt: string;
  /** Empty or absent: the pool's default model. */
  model?: string;
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  /** Makes the text deterministic (and cacheable); absent: droverd picks one. */
  seed?: number;
  stop?: string[];
  priority?: Priority;
  cache?: 'default' | 'bypass';
  /** droverd's own deadline for this request (-32004 when it passes). */
  timeout_ms?: number;
}

export interface GenerateResult {
  text: string;
  finish_reason: 'length' | 'stop' | 'cancelled';
  usage: { prompt_tokens: number; completion_tokens: number };
  /** The worker slot that answered; null when none did (a cached result). */
  worker: number | null;
  cache: 'miss' | 'hit' | 'coalesced' | 'bypass';
  timing: { queue_ms: number; ttft_ms: number; total_ms: number };
}

/** A generate.chunk notification's params. */
export interface Chunk {
  /** The request id of the stream. */
  id: number | string;
  /** 0, 1, 2... contiguous within a stream. */
  index: number;
  text: string;
  /** Present when droverd merged this many worker chunks into one (a slow reader). */
  coalesced?: number;
}

export interface Health {
  status: 'ok' | 'degraded' | 'unavailable';
  workers_ready: number;
  workers_total: number;
  workers_parked: number;
  spares_ready: number;
  uptime_s: number;
  version: string;
}

export interface ModelInfo {
  id: string;
  state: 'loaded' | 'loading' | 'unloaded';
  workers: number[];
  loading: number[];
  backend: string | null;
  waiting_requests: number;
}

export interface CallOptions {
  /** Aborting sends `cancel` to droverd and rejects with an AbortError. */
  signal?: AbortSignal;
  /** Client-side deadline: cancels the call and rejects with DroverError -32004. */
  timeoutMs?: number;
}
