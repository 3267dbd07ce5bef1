// DroverClient when droverd refuses work or goes away (docs/API.md).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ConnectionLostError, DroverClient, DroverError, ErrorCode } from 'drover-client';

import { Droverd, WAIT_MS } from './droverd.js';

const LONG = 100_000;

test('an overloaded droverd rejects with -32001 and retryAfterMs', async () => {
  const d = await new Droverd(1, 200, ['max_queue: 1']).start();
  const c = await DroverClient.connect({ socket: d.socket, timeoutMs: WAIT_MS });
  try {
    const ac = new AbortController();
    const s = c.stream({ prompt: 'holds the only slot', max_tokens: LONG }, { signal: ac.signal });
    await s.next();
    await assert.rejects(c.generate({ prompt: 'refused', max_tokens: 1 }), (e: DroverError) =>
      e instanceof DroverError && e.code === ErrorCode.Overloaded && typeof e.retryAfterMs === 'number');
    ac.abort();
    await assert.rejects(s.result, { name: 'AbortError' });
  } finally {
    await c.close();
    await d.close();
  }
});

test('droverd restarted: calls in flight fail with ConnectionLostError, the next call reconnects', async () => {
  const d = await new Droverd(1).start();
  const c = await DroverClient.connect({ socket: d.socket, timeoutMs: WAIT_MS, connectTimeoutMs: WAIT_MS });
  try {
    const s = c.stream({ prompt: 'interrupted', max_tokens: LONG });
    await s.next();
    const unaryLost = assert.rejects(c.generate({ prompt: 'interrupted unary', max_tokens: LONG }), ConnectionLostError);
    await d.kill();
    await unaryLost;
    await assert.rejects(async () => {
      for await (const _ of s);
    }, ConnectionLostError);
    d.launch();
    assert.equal((await c.health()).workers_total, 1);  // reconnects (with backoff) while droverd starts
    await d.waitReady();
    assert.equal((await c.generate({ prompt: 'after restart', max_tokens: 3 })).usage.completion_tokens, 3);
  } finally {
    await c.close();
    await d.close();
  }
});
