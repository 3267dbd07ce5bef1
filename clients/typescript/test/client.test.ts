// DroverClient against a real droverd with sim workers (docs/API.md).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { type Chunk, DroverClient, DroverError, ErrorCode, type GenerateResult, defaultSocket } from 'drover-client';

import { Droverd, WAIT_MS, waitUntil } from './droverd.js';

const LONG = 100_000;  // tokens: a stream that would run for minutes unless cancelled

describe('DroverClient', () => {
  let d: Droverd;
  let c: DroverClient;
  before(async () => {
    d = await new Droverd(2).start();
    c = await DroverClient.connect({ socket: d.socket, connections: 4, timeoutMs: WAIT_MS });
  });
  after(async () => {
    await c?.close();
    await d?.close();
  });

  test('unary result equals droverctl for the same seed', async () => {
    const r = await c.generate({ prompt: 'ts unary equality', max_tokens: 12, seed: 7 });
    const [ctl] = await d.droverctl('generate', 'ts unary equality', '--max-tokens', '12', '--seed', '7');
    assert.deepEqual([r.text, r.finish_reason, r.usage], [ctl.text, ctl.finish_reason, ctl.usage]);
  });

  test('streamed chunks and result equal droverctl for the same seed', async () => {
    const s = c.stream({ prompt: 'ts stream equality', max_tokens: 12, seed: 9 });
    const chunks: Chunk[] = [];
    for await (const chunk of s) chunks.push(chunk);
    const result = await s.result;
    const ctl = await d.droverctl('generate', 'ts stream equality', '--stream', '--max-tokens', '12', '--seed', '9');
    assert.deepEqual(chunks.map((x) => x.index), [...chunks.keys()]);
    assert.equal(chunks.map((x) => x.text).join(''), ctl.slice(0, -1).map((m) => m.params.text).join(''));
    assert.equal(result.text, ctl.at(-1).text);
    assert.equal(result.text, chunks.map((x) => x.text).join(''));
  });

  test('abort mid-stream rejects with AbortError and cancels at the worker', async () => {
    const pids = (await d.workers()).map((w) => w.pid).sort();
    const ac = new AbortController();
    let n = 0;
    await assert.rejects(async () => {
      for await (const _ of c.stream({ prompt: 'ts aborted stream', max_tokens: LONG, seed: 1 }, { signal: ac.signal })) {
        if (++n === 3) {
          assert.ok((await d.inflight()) > 0);
          ac.abort();
        }
      }
    }, { name: 'AbortError' });
    await waitUntil(async () => (await d.inflight()) === 0, 'the worker to end the cancelled stream');
    assert.deepEqual((await d.workers()).map((w) => w.pid).sort(), pids, 'no worker was replaced');
    assert.equal(c.inflight, 0);
  });

  test('abort of a unary generate rejects with AbortError and cancels at the worker', async () => {
    const ac = new AbortController();
    const call = c.generate({ prompt: 'ts aborted unary', max_tokens: LONG }, { signal: ac.signal });
    const rejected = assert.rejects(call, { name: 'AbortError' });
    await waitUntil(async () => (await d.inflight()) > 0, 'the call to reach a worker');
    ac.abort();
    await rejected;
    await waitUntil(async () => (await d.inflight()) === 0, 'the worker to end the cancelled call');
  });

  test('leaving the loop early cancels; result is the cancelled generation', async () => {
    const s = c.stream({ prompt: 'ts left early', max_tokens: LONG, seed: 2 });
    let n = 0;
    for await (const _ of s) if (++n === 3) break;
    const result = await s.result;
    assert.equal(result.finish_reason, 'cancelled');
    await waitUntil(async () => (await d.inflight()) === 0, 'the worker to end the cancelled stream');
  });

  test('timeoutMs rejects with -32004 and cancels at the worker', async () => {
    await assert.rejects(c.generate({ prompt: 'ts too slow', max_tokens: LONG }, { timeoutMs: 300 }),
      (e: DroverError) => e instanceof DroverError && e.code === ErrorCode.TimedOut);
    await waitUntil(async () => (await d.inflight()) === 0, 'the timed-out call to be cancelled');
  });

  test('invalid params reject with -32602 naming the param', async () => {
    await assert.rejects(c.generate({ prompt: 5 as unknown as string }),
      (e: DroverError) => e.code === ErrorCode.InvalidParams && /prompt/.test((e.data as any).detail));
    await assert.rejects(c.generate({ prompt: 'typo', max_token: 2 } as any),
      (e: DroverError) => e.code === -32602 && /max_token/.test((e.data as any).detail));
  });

  test('tokenize, detokenize, health, models', async () => {
    const tokens = await c.tokenize({ text: 'héllo' });
    assert.deepEqual(tokens, [...Buffer.from('héllo')]);
    assert.equal(await c.detokenize({ tokens }), 'héllo');
    assert.equal((await c.health()).workers_total, 2);
    assert.ok((await c.models()).some((m) => m.id === 'sim'));
  });

  test('a worker SIGKILLed mid-stream: the stream continues', async () => {
    const params = { prompt: 'ts failover', max_tokens: 400, seed: 11, cache: 'bypass' as const };
    const reference = await c.generate(params);
    const s = c.stream(params);
    const chunks: Chunk[] = [];
    for await (const chunk of s) {
      chunks.push(chunk);
      if (chunks.length === 5) {
        const busy = (await d.workers()).filter((w) => w.inflight > 0);
        assert.equal(busy.length, 1);
        await d.admin('workers.kill', { id: busy[0].id, signal: 'KILL' });
      }
    }
    const result = await s.result;
    assert.deepEqual(chunks.map((x) => x.index), [...chunks.keys()]);
    assert.equal(chunks.map((x) => x.text).join(''), reference.text);
    assert.equal(result.text, reference.text);
    await waitUntil(async () => (await d.workers()).filter((w) => w.state === 'ready').length === 2, 'the replacement');
  });

  test('a slow reader: the stream, held to 2 unread chunks, arrives whole and in order', async () => {
    const slow = await DroverClient.connect({ socket: d.socket, maxBufferedChunks: 2, timeoutMs: WAIT_MS });
    try {
      const s = slow.stream({ prompt: 'ts slow reader', max_tokens: 30, seed: 5 });
      const chunks: Chunk[] = [];
      for await (const chunk of s) {
        chunks.push(chunk);
        // Two tokens' time per chunk read, one per chunk produced: unread chunks pile up.
        await c.generate({ prompt: `ts slow reader ${chunk.index}`, max_tokens: 2, cache: 'bypass' });
      }
      const result = await s.result;
      assert.deepEqual(chunks.map((x) => x.index), [...chunks.keys()]);
      assert.equal(chunks.map((x) => x.text).join(''), result.text);
      assert.equal(result.usage.completion_tokens, 30);
    } finally {
      await slow.close();
    }
  });

  test('1,000 concurrent calls are answered once each', async () => {
    const answered = new Map<number, number>();
    const results = await Promise.all(Array.from({ length: 1000 }, async (_, i): Promise<GenerateResult> => {
      const r = await c.generate({ prompt: `ts many ${i}`, max_tokens: 2, seed: i });
      answered.set(i, (answered.get(i) ?? 0) + 1);
      return r;
    }));
    assert.equal(results.length, 1000);
    assert.ok([...answered.values()].every((n) => n === 1));
    assert.ok(results.every((r) => r.usage.completion_tokens === 2));
    assert.equal(c.inflight, 0);
  });

  test('the README examples run as written', async () => {
    // dist-test/test/ -> the package root
    const pkg = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
    const readme = fs.readFileSync(path.join(pkg, 'README.md'), 'utf8');
    const blocks = [...readme.matchAll(/^```js\n([\s\S]*?)^```/gm)].map((m) => m[1]);
    assert.ok(blocks.length >= 3);
    for (const block of blocks) {
      await new Promise<void>((resolve, reject) => {
        execFile(process.execPath, ['--input-type=module', '-e', block],
          { cwd: pkg, env: { ...process.env, DROVER_SERVER_SOCKET: d.socket }, timeout: WAIT_MS },
          (error, stdout, stderr) => error ? reject(new Error(`README block failed:\n${block}\n${stdout}\n${stderr}`)) : resolve());
      });
    }
  });
});

// The default socket is droverd's: the same rule as droverctl (common/run_paths.hpp).
describe('defaultSocket', () => {
  const keys = ['DROVER_SERVER_SOCKET', 'XDG_RUNTIME_DIR', 'TMPDIR'] as const;
  const droverctlDefault = (env: NodeJS.ProcessEnv) => new Promise<string>((resolve, reject) => {
    execFile(process.env.DROVERCTL_BIN as string, ['--help'], { env, timeout: WAIT_MS }, (error, stdout) => {
      const m = /--socket TEXT=(\S+)/.exec(stdout);
      return error || !m ? reject(new Error(`droverctl --help: ${error?.message ?? stdout}`)) : resolve(m[1]);
    });
  });
  test('is droverctl\'s for every environment', async () => {
    const saved = Object.fromEntries(keys.map((k) => [k, process.env[k]]));
    try {
      const cases: Record<string, string>[] = [
        { XDG_RUNTIME_DIR: '/run/user/7' }, {}, { TMPDIR: '/var/tmp' }, { DROVER_SERVER_SOCKET: '/srv/d.sock' }];
      for (const c of cases) {
        for (const k of keys) delete process.env[k];
        Object.assign(process.env, c);
        assert.equal(defaultSocket(), await droverctlDefault({ ...process.env }), JSON.stringify(c));
      }
      for (const k of keys) delete process.env[k];
      process.env.XDG_RUNTIME_DIR = '/run/user/7';
      assert.equal(defaultSocket(), '/run/user/7/drover/drover.sock');
    } finally {
      for (const k of keys) {
        if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k];
      }
    }
  });
});
