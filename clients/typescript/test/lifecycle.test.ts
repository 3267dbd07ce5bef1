// DroverClient when droverd refuses work or goes away (docs/API.md).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ConnectionLostError, DroverClient, DroverError, ErrorCode } from 'drover-client';

import { Droverd, TCP_LISTEN, WAIT_MS, waitUntil } from './droverd.js';

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

test('tcp:// with retrySafe: across a SIGKILLed droverd only the seeded generate is sent again', async () => {
  const d = await new Droverd(1, 200, [TCP_LISTEN]).start();
  d.pinTcpPort();
  const address = d.tcpAddress();
  const quiet = await DroverClient.connect({ address: d.socket, timeoutMs: WAIT_MS });
  const c = await DroverClient.connect({ address, timeoutMs: WAIT_MS, connectTimeoutMs: WAIT_MS, retrySafe: true });
  const off = await DroverClient.connect({ address, timeoutMs: WAIT_MS, connectTimeoutMs: WAIT_MS });
  try {
    const params = { prompt: 'ts resent', max_tokens: 1000, seed: 8, cache: 'bypass' as const };
    assert.equal((await c.generate({ prompt: 'over tcp', max_tokens: 6, seed: 3 })).text,
      (await quiet.generate({ prompt: 'over tcp', max_tokens: 6, seed: 3 })).text);
    assert.deepEqual(await c.tokenize({ text: 'abc' }), [97, 98, 99]);
    const expected = (await quiet.generate(params)).text;
    const seeded = c.generate(params);
    const unseeded = assert.rejects(c.generate({ prompt: 'ts not resent', max_tokens: LONG }), ConnectionLostError);
    const defaultOff = assert.rejects(off.generate({ ...params, prompt: 'ts off by default' }), ConnectionLostError);
    await waitUntil(async () => (await d.inflight()) > 0, 'the calls to reach the worker');
    await d.kill();
    d.launch();
    await unseeded;
    await defaultOff;
    assert.equal((await seeded).text, expected);
    assert.ok(c.retries >= 1, `retries ${c.retries}`);  // 2 when a sending met the dying listener
    assert.equal(off.retries, 0);
  } finally {
    await Promise.all([quiet.close(), c.close(), off.close()]);
    await d.close();
  }
});

test('a malformed tcp:// address throws a TypeError naming it', async () => {
  await assert.rejects(DroverClient.connect({ address: 'tcp://nohost' }), (e: Error) =>
    e instanceof TypeError && /tcp:\/\/nohost/.test(e.message));
});
