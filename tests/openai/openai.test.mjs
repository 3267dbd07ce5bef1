// The official `openai` npm client (4.x), unchanged, against a real droverd with sim workers
// (shared/DESIGN.md section 4b, docs/OPENAI.md): completions, chat, streaming with for await,
// an abort mid-stream whose cancel reaches the worker, 404 / 401 / 429 as the client's typed
// errors, and a SIGKILL of the worker holding a stream, which the client never sees: its text
// equals a quiet re-run with the same seed.
//
// Each droverd runs in its own temp dir with openai.listen 127.0.0.1:0; the port is read from
// its log. Every wait polls a condition against a deadline. Run by CTest (tests/openai/
// CMakeLists.txt) with DROVERD and DROVER_WORKER set to the binaries under test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import OpenAI from 'openai';

const DROVERD = process.env.DROVERD;
const WORKER = process.env.DROVER_WORKER;
const KEY = 'sk-drover-test';
const TIMEOUT_MS = 30_000;

async function waitUntil(pred, what, timeoutMs = TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(20); // the poll interval of a deadline-bounded wait, not a synchronisation
  }
}

// One JSON-RPC call on a Unix socket (NDJSON framing).
function rpc(socket, method, params = {}) {
  return new Promise((resolve, reject) => {
    const c = net.createConnection(socket);
    let buf = '';
    c.setTimeout(TIMEOUT_MS, () => c.destroy(new Error(`${method}: no reply`)));
    c.on('connect', () => c.write(JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }) + '\n'));
    c.on('data', (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      c.end();
      const reply = JSON.parse(buf.slice(0, nl));
      reply.error ? reject(new Error(JSON.stringify(reply.error))) : resolve(reply.result);
    });
    c.on('error', reject);
  });
}

class Droverd {
  constructor({ workerArgs = [], serverYaml = '' } = {}) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-oa-'));
    this.admin = path.join(this.dir, 'a.sock');
    this.log = path.join(this.dir, 'droverd.log');
    const q = (s) => JSON.stringify(s);
    const config = [
      'server:',
      `  socket: ${q(path.join(this.dir, 'c.sock'))}`,
      `  admin_socket: ${q(this.admin)}`,
      `  run_dir: ${q(path.join(this.dir, 'run'))}`,
      serverYaml,
      'workers:',
      '  count: 2',
      `  command: [${[WORKER, ...workerArgs].map(q).join(', ')}]`,
      'metrics:',
      '  listen: ""',
      'openai:',
      '  enabled: true',
      '  listen: 127.0.0.1:0',
      `  api_keys: [${KEY}]`,
      '',
    ].join('\n');
    fs.writeFileSync(path.join(this.dir, 'droverd.yaml'), config);
  }

  async start() {
    const out = fs.openSync(this.log, 'w');
    this.proc = spawn(DROVERD, ['--config', path.join(this.dir, 'droverd.yaml')], {
      stdio: ['ignore', out, out],
    });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code) => resolve(code)));
    const port = await waitUntil(() => {
      const m = /OpenAI-compatible API on http:\/\/127\.0\.0\.1:(\d+)\/v1/.exec(fs.readFileSync(this.log, 'utf8'));
      return m && Number(m[1]);
    }, 'the OpenAI API port in the log');
    await waitUntil(async () => {
      const ws = await rpc(this.admin, 'workers.list').catch(() => null);
      return ws && ws.workers.length === 2 && ws.workers.every((w) => w.state === 'ready');
    }, 'two ready workers');
    this.baseURL = `http://127.0.0.1:${port}/v1`;
    return this;
  }

  client(options = {}) {
    return new OpenAI({ apiKey: KEY, baseURL: this.baseURL, maxRetries: 0, timeout: TIMEOUT_MS, ...options });
  }

  async workers() {
    return (await rpc(this.admin, 'workers.list')).workers;
  }

  async allIdle() {
    return (await this.workers()).every((w) => w.inflight === 0);
  }

  async stop() {
    if (this.proc.exitCode === null) this.proc.kill('SIGTERM');
    // Unref'd: a pending deadline must not keep the test process alive once droverd is gone.
    const code = await Promise.race([this.exited, delay(TIMEOUT_MS, 'timeout', { ref: false })]);
    if (code === 'timeout') this.proc.kill('SIGKILL');
    fs.rmSync(this.dir, { recursive: true, force: true });
    assert.equal(code, 0, 'droverd exits 0 on SIGTERM');
  }
}

let d; // 20 tokens/s: a stream of 40 tokens runs ~2 s, long enough to abort or kill mid-way
before(async () => {
  d = await new Droverd({ workerArgs: ['--ttft-ms', '1', '--tokens-per-s', '20'] }).start();
});
after(async () => d && d.stop());

test('completions', async () => {
  const r = await d.client().completions.create({ model: 'sim', prompt: 'Hello', max_tokens: 5, seed: 1 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.model, 'sim');
  assert.equal(r.choices.length, 1);
  assert.ok(r.choices[0].text.length > 0);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 5);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 5);
});

test('chat completions', async () => {
  const r = await d.client().chat.completions.create({
    model: 'sim',
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }],
    max_tokens: 4,
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.ok(r.choices[0].message.content.length > 0);
  assert.equal(r.usage.completion_tokens, 4);
  const models = await d.client().models.list();
  assert.deepEqual(models.data.map((m) => m.id), ['sim']);
});

test('streaming with for await carries the same text as the unary answer', async () => {
  const request = { model: 'sim', messages: [{ role: 'user', content: 'stream me' }], max_tokens: 6, seed: 5 };
  const unary = await d.client().chat.completions.create(request);
  const stream = await d.client().chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let finish = null;
  let usage = null;
  let role = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      role ??= c.delta.role;
      text += c.delta.content ?? '';
      finish = c.finish_reason ?? finish;
    }
  }
  assert.equal(role, 'assistant');
  assert.equal(text, unary.choices[0].message.content);
  assert.equal(finish, 'length');
  assert.deepEqual(usage, unary.usage);
});

test('an abort mid-stream cancels the work at the worker', async () => {
  const controller = new AbortController();
  const stream = await d.client().completions.create(
    { model: 'sim', prompt: 'never finished', max_tokens: 2000, stream: true },
    { signal: controller.signal },
  );
  let chunks = 0;
  // The client ends the iteration quietly on abort, as OpenAI's SDK does.
  for await (const chunk of stream) {
    chunks += chunk.choices.length;
    if (chunks === 2) {
      assert.ok(!(await d.allIdle()), 'a worker holds the stream');
      controller.abort();
    }
  }
  assert.ok(chunks >= 2 && chunks < 100, `the stream stopped at the abort (${chunks} chunks)`);
  // droverd lowers a worker's inflight only when the worker answers: the cancel reached it
  // (the stream alone would run for 100 s).
  await waitUntil(() => d.allIdle(), 'every worker idle after the abort');
});

test('an unknown model is a 404 NotFoundError', async () => {
  await assert.rejects(
    d.client().completions.create({ model: 'no-such-model', prompt: 'x' }),
    (e) => e instanceof OpenAI.NotFoundError && e.status === 404 && e.code === 'model_not_found' && e.param === 'model',
  );
});

test('a wrong key is a 401 AuthenticationError', async () => {
  await assert.rejects(
    d.client({ apiKey: 'sk-wrong' }).completions.create({ model: 'sim', prompt: 'x' }),
    (e) => e instanceof OpenAI.AuthenticationError && e.status === 401,
  );
});

test('an unsupported option is a 400 naming it', async () => {
  await assert.rejects(
    d.client().completions.create({ model: 'sim', prompt: 'x', n: 3 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'n',
  );
});

test('a SIGKILL of the worker holding a stream leaves one unbroken stream', async () => {
  const request = { model: 'sim', prompt: 'survive a kill', max_tokens: 40, seed: 99, temperature: 0.7 };
  const stream = await d.client().completions.create({ ...request, stream: true });
  let text = '';
  let finish = null;
  let killed = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      text += c.text;
      finish = c.finish_reason ?? finish;
    }
    if (killed === null && text.length > 0) {
      const busy = (await d.workers()).find((w) => w.inflight > 0);
      assert.ok(busy, 'a worker holds the stream');
      killed = busy.pid;
      process.kill(killed, 'SIGKILL');
    }
  }
  assert.ok(killed, 'the worker was killed mid-stream');
  assert.equal(finish, 'length');
  // A quiet re-run (Cache-Control: no-cache, so a worker computes it again) gives the same text.
  const quiet = await d.client().completions.create(request, { headers: { 'Cache-Control': 'no-cache' } });
  assert.equal(text, quiet.choices[0].text);
  assert.equal(quiet.usage.completion_tokens, 40);
  await waitUntil(async () => {
    const ws = await d.workers();
    return ws.length === 2 && ws.every((w) => w.state === 'ready' && w.pid !== killed);
  }, 'the killed worker replaced');
});

test('overload is a 429 RateLimitError with Retry-After', async () => {
  // One request at a time: while a long stream holds the only admission slot, the next
  // request is refused.
  const busy = await new Droverd({ workerArgs: ['--tokens-per-s', '20'], serverYaml: '  max_queue: 1' }).start();
  try {
    const controller = new AbortController();
    const first = await busy.client().completions.create(
      { model: 'sim', prompt: 'long', max_tokens: 2000, stream: true },
      { signal: controller.signal },
    );
    const reading = (async () => {
      for await (const chunk of first) void chunk;
    })();
    await waitUntil(async () => !(await busy.allIdle()), 'the first request at a worker');
    await assert.rejects(busy.client().completions.create({ model: 'sim', prompt: 'turned away', max_tokens: 1 }), (e) => {
      assert.ok(e instanceof OpenAI.RateLimitError, `${e}`);
      assert.equal(e.status, 429);
      assert.ok(Number(e.headers['retry-after']) >= 1);
      return true;
    });
    controller.abort();
    await reading;
    await waitUntil(() => busy.allIdle(), 'the long stream cancelled at its worker');
  } finally {
    await busy.stop();
  }
});
