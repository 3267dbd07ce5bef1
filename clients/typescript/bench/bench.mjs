#!/usr/bin/env node
// Requests per second of drover-client against a raw socket client (newline-delimited JSON,
// one JSON.parse per line: the least a correct client does), at 1 call in flight and at 64, on
// one connection each. Prompts are unique and bypass the prompt cache, so every call reaches a
// worker. Needs `npm run build` first.
// Each cell runs `rounds` times, raw and library alternating, and reports the median (a shared
// machine's load drifts within seconds).
//   node bench/bench.mjs [--socket PATH] [--seconds 2] [--rounds 3] [--max-tokens 8]
import net from 'node:net';
import { parseArgs } from 'node:util';

import { DroverClient, defaultSocket } from '../dist/index.js';

const { values } = parseArgs({
  options: {
    socket: { type: 'string', default: defaultSocket() },
    seconds: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '3' },
    'max-tokens': { type: 'string', default: '8' },
  },
});
const seconds = Number(values.seconds);
const maxTokens = Number(values['max-tokens']);
const rounds = Number(values.rounds);
const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
let serial = 0;
const params = () => ({ prompt: `bench ${process.pid} ${serial++}`, max_tokens: maxTokens, cache: 'bypass' });

// Runs `inflight` loops of `call` for `seconds`: calls completed per second, and this process's
// CPU time per call (user + system, µs), which droverd's speed and the machine's load do not
// change.
async function run(inflight, call) {
  const end = Date.now() + seconds * 1000;
  const cpu0 = process.cpuUsage();
  let done = 0;
  await Promise.all(Array.from({ length: inflight }, async () => {
    while (Date.now() < end) {
      await call();
      done++;
    }
  }));
  const cpu = process.cpuUsage(cpu0);
  return { rate: done / seconds, cpuUs: (cpu.user + cpu.system) / done };
}

async function rawClient(path) {
  const socket = net.createConnection({ path });
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const waiting = new Map();
  let nextId = 1;
  let partial = '';
  socket.setEncoding('utf8');
  socket.on('data', (data) => {
    const lines = (partial + data).split('\n');
    partial = lines.pop();
    for (const line of lines) {
      const m = JSON.parse(line);
      if (m.id !== undefined) {
        waiting.get(m.id)?.(m);
        waiting.delete(m.id);
      }
    }
  });
  return {
    call: () => new Promise((resolve) => {
      const id = nextId++;
      waiting.set(id, resolve);
      socket.write(JSON.stringify({ jsonrpc: '2.0', id, method: 'generate', params: params() }) + '\n');
    }),
    close: () => socket.destroy(),
  };
}

const raw = await rawClient(values.socket);
const lib = await DroverClient.connect({ socket: values.socket });
await run(8, () => lib.generate(params()));  // warm-up: workers, allocators, JIT
await run(8, raw.call);
console.log(`socket ${values.socket}, median of ${rounds} x ${seconds} s per cell, max_tokens ${maxTokens}, one connection each`);
console.log('in flight | raw socket req/s | drover-client req/s | library cost | client CPU µs/req raw / library');
for (const inflight of [1, 64]) {
  const raws = [], libs = [];
  for (let i = 0; i < rounds; i++) {
    raws.push(await run(inflight, raw.call));
    libs.push(await run(inflight, () => lib.generate(params())));
  }
  const r = median(raws.map((x) => x.rate));
  const l = median(libs.map((x) => x.rate));
  const cr = median(raws.map((x) => x.cpuUs));
  const cl = median(libs.map((x) => x.cpuUs));
  const cost = ((r - l) / r) * 100;
  console.log(`${String(inflight).padStart(9)} | ${r.toFixed(0).padStart(16)} | ${l.toFixed(0).padStart(19)} | ` +
    `${(cost.toFixed(1) + ' %').padStart(12)} | ${cr.toFixed(1)} / ${cl.toFixed(1)}`);
}
raw.close();
await lib.close();
