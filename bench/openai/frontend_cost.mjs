#!/usr/bin/env node
// The OpenAI HTTP frontend's own cost against the JSON-RPC socket's (docs/PERFORMANCE.md
// "OpenAI HTTP API vs JSON-RPC"): one droverd with 2 sim workers at zero service time, the same
// load through each frontend in turn (C connections, each sending its next request when the
// last is answered, for S seconds; generate of 1 token, no seed, so every request runs on a
// worker), reporting requests/s and droverd's CPU per request (utime + stime from /proc).
// The client is the same Node process for both, so requests/s is bounded by it alike; the CPU
// per request is droverd's alone. Then time to first token through each: R streamed requests
// (max_tokens 4) one after another on one connection, from the request's write to its first
// token (JSON-RPC: the first generate.chunk; OpenAI: the first SSE event with text), p50/p95/p99.
//
// Usage: node bench/openai/frontend_cost.mjs [BUILD_DIR] [SECONDS] [CONNECTIONS] [TTFT_REQUESTS]
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

const build = path.resolve(process.argv[2] ?? 'build');
const seconds = Number(process.argv[3] ?? 5);
const connections = Number(process.argv[4] ?? 16);
const ttftRequests = Number(process.argv[5] ?? 2000);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-fc-'));
const sock = path.join(dir, 'c.sock');
fs.writeFileSync(path.join(dir, 'd.yaml'), `server:
  socket: ${sock}
  admin_socket: ${path.join(dir, 'a.sock')}
  max_queue: 100000
workers:
  count: 2
  command: [${build}/bin/drover-worker, --ttft-ms, "0", --tokens-per-s, "0"]
  backend: sim
routing:
  strategy: round_robin
metrics:
  listen: ""
openai:
  enabled: true
  listen: 127.0.0.1:0
`);
const log = path.join(dir, 'droverd.log');
const out = fs.openSync(log, 'w');
const droverd = spawn(`${build}/bin/droverd`, ['--config', path.join(dir, 'd.yaml')], { stdio: ['ignore', out, out] });

async function until(pred, what) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const v = pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await delay(50);
  }
}

const cpuTicks = () => {
  const f = fs.readFileSync(`/proc/${droverd.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime, in clock ticks (100/s)
};

const body = JSON.stringify({ model: 'sim', prompt: 'hi', max_tokens: 1 });
const streamBody = JSON.stringify({ model: 'sim', prompt: 'hi', max_tokens: 4, stream: true });

// generate(params) on one JSON-RPC connection, one request after another while more() says
// so (asked as each is answered); onSend() as each goes out, onChunk() for each generate.chunk.
function jsonrpcSequence(params, more, onSend = () => {}, onChunk = () => {}) {
  return new Promise((resolve, reject) => {
    const c = net.createConnection(sock);
    let id = 0, buf = '';
    const send = () => {
      onSend();
      c.write(`{"jsonrpc":"2.0","id":${++id},"method":"generate","params":${params}}\n`);
    };
    c.on('connect', send);
    c.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.includes('"generate.chunk"')) onChunk();
        else if (!line.includes('"result"')) return reject(new Error(line));
        else if (more()) send();
        else { c.end(); resolve(); }
      }
    });
    c.on('error', reject);
  });
}

// The same through POST /v1/completions on a keep-alive agent; onData() for each body piece.
function httpSequence(port, agent, payload, more, onSend = () => {}, onData = () => {}) {
  return new Promise((resolve, reject) => {
    const one = () => {
      onSend();
      const req = http.request({ host: '127.0.0.1', port, path: '/v1/completions', method: 'POST', agent,
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) } }, (res) => {
        res.on('data', onData);
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}`));
          if (more()) one(); else resolve();
        });
      });
      req.on('error', reject);
      req.end(payload);
    };
    one();
  });
}

// Requests answered until stopAt.
async function jsonrpcLoop(stopAt) {
  let n = 0;
  await jsonrpcSequence(body, () => (++n, Date.now() < stopAt));
  return n;
}

async function httpLoop(port, agent, stopAt) {
  let n = 0;
  await httpSequence(port, agent, body, () => (++n, Date.now() < stopAt));
  return n;
}

// The TTFTs (ms) of `count` streamed requests sent one after another: `sequence` runs them,
// `isToken` tells a piece that carries the first token.
async function ttfts(count, sequence, isToken) {
  const ttft = [];
  let t0 = 0, first = true;
  await sequence(() => ttft.length < count, () => { t0 = performance.now(); first = true; }, (piece) => {
    if (first && isToken(piece)) ttft.push(performance.now() - t0), first = false;
  });
  return ttft;
}

async function ttftPhase(name, run) {
  await run(200);  // warm-up, not counted
  const t = (await run(ttftRequests)).sort((a, b) => a - b);
  const q = (p) => t[Math.min(t.length - 1, Math.floor(p * t.length))].toFixed(3);
  console.log(`${name.padEnd(8)} TTFT over ${t.length} sequential streams: p50 ${q(0.5)} ms, ` +
              `p95 ${q(0.95)} ms, p99 ${q(0.99)} ms`);
}

async function phase(name, loop) {
  // Warm-up: one second not counted.
  await Promise.all(Array.from({ length: connections }, () => loop(Date.now() + 1000)));
  const t0 = Date.now(), c0 = cpuTicks();
  const counts = await Promise.all(Array.from({ length: connections }, () => loop(Date.now() + seconds * 1000)));
  const wall = (Date.now() - t0) / 1000, cpu = (cpuTicks() - c0) / 100;
  const n = counts.reduce((a, b) => a + b, 0);
  console.log(`${name.padEnd(8)} ${connections} connections, ${seconds} s: ${n} requests, ` +
              `${Math.round(n / wall)} req/s, droverd CPU ${(cpu * 1e6 / n).toFixed(1)} us/request ` +
              `(${(100 * cpu / wall).toFixed(0)} % of a core)`);
}

try {
  const port = await until(() => {
    const m = /OpenAI-compatible API on http:\/\/127\.0\.0\.1:(\d+)\/v1/.exec(fs.readFileSync(log, 'utf8'));
    return m && Number(m[1]);
  }, 'droverd');
  await until(() => (fs.readFileSync(log, 'utf8').match(/ready in/g) ?? []).length >= 2, 'workers ready');
  await phase('jsonrpc', (stopAt) => jsonrpcLoop(stopAt));
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  await phase('openai', (stopAt) => httpLoop(port, agent, stopAt));
  await ttftPhase('jsonrpc', (n) => ttfts(n, (...a) => jsonrpcSequence(streamBody, ...a), () => true));
  await ttftPhase('openai', (n) => ttfts(n, (...a) => httpSequence(port, agent, streamBody, ...a),
                                         (piece) => piece.includes('"text"')));
  agent.destroy();
} finally {
  droverd.kill('SIGTERM');
  await new Promise((r) => droverd.on('exit', r));
  fs.rmSync(dir, { recursive: true, force: true });
}
