#!/usr/bin/env node
// The Node baseline: a small supervisor built the way the Node.js front end drover replaces
// was built (shared/DESIGN.md), so "faster than Node" can be measured against the same
// workers with the same load generator. No npm dependencies; Node 20.
//
// - Clients speak JSON-RPC 2.0 over a Unix socket, one JSON message per line (NDJSON).
// - N workers are spawned as `drover-worker --stdio ...` with stdio pipes; each says `hello`,
//   gets `init`, and is ready once init is answered (proto/README.md, worker protocol).
// - generate / tokenize / detokenize are routed round-robin over ready workers. Ids are
//   remapped: each worker link numbers its own requests, and the reply (and every
//   generate.chunk, whose params.id names the request) is rewritten to the client's id.
// - cancel, health and models.list are answered here; other methods get -32601.
// - A client that disconnects has its requests cancelled at the workers; a worker that exits
//   fails its requests with -32003 and is respawned; one silent for 5 heartbeats is killed.
//
// Every message is JSON.parse'd on the way in and JSON.stringify'd on the way out, as the
// design being replaced did. It is a baseline, not a strawman: no per-request logging, no
// extra copies beyond what idiomatic Node does, writes left to Node's stream buffering.
'use strict';

const net = require('node:net');
const fs = require('node:fs');
const { spawn } = require('node:child_process');
const { parseArgs } = require('node:util');

const USAGE = `usage: node supervisor.js [--socket PATH] [--workers N] [--worker-bin PATH]
                          [--backend NAME] [--heartbeat-interval-ms MS] [-- WORKER_ARGS...]
  Arguments after -- are appended to every worker's argv (e.g. -- --ttft-ms 0).`;

const { values: opts, positionals: workerArgs } = parseArgs({
  options: {
    socket: { type: 'string', default: '/tmp/drover-node.sock' },
    workers: { type: 'string', default: '2' },
    'worker-bin': { type: 'string', default: 'drover-worker' },
    backend: { type: 'string', default: 'sim' },
    'heartbeat-interval-ms': { type: 'string', default: '1000' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  allowPositionals: true,
});
if (opts.help) {
  console.log(USAGE);
  process.exit(0);
}
const WORKER_COUNT = Number.parseInt(opts.workers, 10);
const HEARTBEAT_MS = Number.parseInt(opts['heartbeat-interval-ms'], 10);
if (!(WORKER_COUNT >= 1) || !(HEARTBEAT_MS >= 1)) {
  console.error(USAGE);
  process.exit(2);
}

const VERSION = 'node-baseline-1';
const started = Date.now();
const log = (...args) => console.error(new Date().toISOString(), '[node-supervisor]', ...args);

// JSON-RPC error codes (shared/DESIGN.md section 4).
const PARSE_ERROR = -32700;
const INVALID_REQUEST = -32600;
const METHOD_NOT_FOUND = -32601;
const INVALID_PARAMS = -32602;
const NO_WORKER = -32002;
const WORKER_FAILED = -32003;
const SHUTTING_DOWN = -32009;

function errorReply(id, code, message, data) {
  const error = { code, message };
  if (data !== undefined) error.data = data;
  return { jsonrpc: '2.0', id: id === undefined ? null : id, error };
}

// Splits a stream of text into lines; calls onLine for each complete one.
function lineReader(stream, onLine) {
  let buffered = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop();
    for (const line of lines) onLine(line);
  });
}

// ---------------------------------------------------------------------------------------------
// Workers

class Worker {
  constructor(slot) {
    this.slot = slot;
    this.generation = 0;
    this.proc = null;
    this.ready = false;
    this.nextId = 1;
    this.pending = new Map(); // worker request id -> Pending
    this.lastHeartbeat = 0;
    this.models = [];
  }

  start() {
    this.generation += 1;
    this.ready = false;
    this.nextId = 1;
    const proc = spawn(opts['worker-bin'], ['--stdio', ...workerArgs], {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, DROVER_WORKER_ID: String(this.slot) },
    });
    this.proc = proc;
    this.lastHeartbeat = Date.now();
    proc.stdin.on('error', () => {}); // EPIPE when the worker dies; 'exit' handles it
    proc.on('error', (err) => log(`worker ${this.slot}: spawn failed: ${err.message}`));
    proc.on('exit', (code, signal) => this.onExit(proc, code, signal));
    lineReader(proc.stdout, (line) => this.onLine(line));
  }

  send(message) {
    this.proc.stdin.write(JSON.stringify(message) + '\n');
  }

  onLine(line) {
    if (line.length === 0) return;
    let msg;
    try {
      msg = JSON.parse(line);
    } catch {
      log(`worker ${this.slot}: garbage on stdout; killing it`);
      this.proc.kill('SIGKILL');
      return;
    }
    if (msg.method !== undefined) return this.onNotification(msg);
    const pending = this.pending.get(msg.id);
    if (pending === undefined) return;
    this.pending.delete(msg.id);
    pending.finish(msg, this);
  }

  onNotification(msg) {
    const params = msg.params || {};
    switch (msg.method) {
      case 'generate.chunk': {
        const pending = this.pending.get(params.id);
        if (pending !== undefined) pending.chunk(msg);
        return;
      }
      case 'heartbeat':
        this.lastHeartbeat = Date.now();
        return;
      case 'hello':
        this.pending.set(0, new InitCall());
        this.send({
          jsonrpc: '2.0',
          id: 0,
          method: 'init',
          params: {
            worker_id: this.slot,
            generation: this.generation,
            backend: opts.backend,
            heartbeat_interval_ms: HEARTBEAT_MS,
            transport: 'stdio',
            preload: { enabled: false },
          },
        });
        return;
      case 'model.loaded':
        return;
      default:
        log(`worker ${this.slot}: unknown notification ${msg.method}`);
    }
  }

  onInit(reply) {
    if (reply.error) {
      log(`worker ${this.slot}: init failed: ${reply.error.message}; killing it`);
      this.proc.kill('SIGKILL');
      return;
    }
    this.models = reply.result.models || [];
    this.ready = true;
    log(`worker ${this.slot}: ready (pid ${this.proc.pid}, models ${this.models.join(', ')})`);
  }

  onExit(proc, code, signal) {
    if (proc !== this.proc) return;
    this.ready = false;
    const failed = this.pending;
    this.pending = new Map();
    for (const pending of failed.values()) {
      pending.finish(errorReply(null, WORKER_FAILED, 'Worker failed', { attempts: 1, worker: this.slot }), this);
    }
    if (shuttingDown) return;
    log(`worker ${this.slot}: exited (code ${code}, signal ${signal}); restarting`);
    setTimeout(() => this.start(), 500).unref();
  }
}

class InitCall {
  finish(reply, worker) {
    worker.onInit(reply);
  }
  chunk() {}
}

const workers = [];
let nextWorker = 0;

function pickWorker() {
  for (let i = 0; i < workers.length; i++) {
    const w = workers[(nextWorker + i) % workers.length];
    if (w.ready) {
      nextWorker = (nextWorker + i + 1) % workers.length;
      return w;
    }
  }
  return null;
}

// Kill workers whose heartbeats stopped (a hung worker never answers).
setInterval(() => {
  const now = Date.now();
  for (const w of workers) {
    if (w.proc && w.proc.exitCode === null && now - w.lastHeartbeat > 5 * HEARTBEAT_MS) {
      log(`worker ${w.slot}: no heartbeat for ${now - w.lastHeartbeat} ms; killing it`);
      w.lastHeartbeat = now;
      w.proc.kill('SIGKILL');
    }
  }
}, HEARTBEAT_MS).unref();

// ---------------------------------------------------------------------------------------------
// Clients

// One client request in flight at a worker.
class Pending {
  constructor(client, clientId, notification, stream, kind) {
    this.client = client; // null once the client disconnected
    this.clientId = clientId;
    this.notification = notification;
    this.stream = stream;
    this.kind = kind;
  }

  chunk(msg) {
    if (this.client === null || this.notification || !this.stream) return;
    msg.params.id = this.clientId;
    this.client.send(msg);
  }

  finish(reply, worker) {
    const client = this.client;
    if (client === null) return;
    client.requests.delete(this);
    if (this.notification) return;
    if (reply.error) {
      client.send({ jsonrpc: '2.0', id: this.clientId, error: reply.error });
      return;
    }
    let result = reply.result;
    if (this.kind === 'generate' && result !== null && typeof result === 'object') {
      result.worker = worker.slot;
    } else if (this.kind === 'tokenize' && result !== null && Array.isArray(result.tokens)) {
      result = { tokens: result.tokens[0] };
    }
    client.send({ jsonrpc: '2.0', id: this.clientId, result });
  }
}

const clients = new Set();

class Client {
  constructor(socket) {
    this.socket = socket;
    this.requests = new Map(); // Pending -> { worker, workerId }
    clients.add(this);
    socket.on('error', () => {});
    socket.on('close', () => this.onClose());
    lineReader(socket, (line) => this.onLine(line));
  }

  send(message) {
    if (!this.socket.destroyed) this.socket.write(JSON.stringify(message) + '\n');
  }

  onClose() {
    clients.delete(this);
    for (const [pending, at] of this.requests) {
      pending.client = null;
      if (at.worker.pending.has(at.workerId)) {
        at.worker.send({ jsonrpc: '2.0', method: 'cancel', params: { id: at.workerId } });
      }
    }
    this.requests.clear();
  }

  onLine(line) {
    if (line.trim().length === 0) return;
    let msg;
    try {
      msg = JSON.parse(line);
    } catch {
      this.send(errorReply(null, PARSE_ERROR, 'Parse error'));
      return;
    }
    if (Array.isArray(msg)) {
      this.send(errorReply(null, INVALID_REQUEST, 'Invalid Request', { detail: 'batches are not supported' }));
      return;
    }
    if (msg === null || typeof msg !== 'object' || msg.jsonrpc !== '2.0' || typeof msg.method !== 'string') {
      const id = msg && (typeof msg.id === 'string' || typeof msg.id === 'number') ? msg.id : null;
      this.send(errorReply(id, INVALID_REQUEST, 'Invalid Request'));
      return;
    }
    const notification = !('id' in msg);
    const reply = (message) => {
      if (!notification) this.send(message);
    };
    const params = msg.params === undefined ? {} : msg.params;
    if (params === null || typeof params !== 'object' || Array.isArray(params)) {
      if (msg.method === 'health' || msg.method === 'models.list') {
        // methods without parameters accept [] as well
      } else {
        return reply(errorReply(msg.id, INVALID_PARAMS, 'Invalid params', { detail: 'params must be an object' }));
      }
    }
    switch (msg.method) {
      case 'generate':
        if (typeof params.prompt !== 'string') {
          return reply(errorReply(msg.id, INVALID_PARAMS, 'Invalid params', { detail: 'prompt must be a string' }));
        }
        return this.forward(msg, notification, 'generate', 'generate', params, params.stream === true);
      case 'tokenize':
        if (typeof params.text !== 'string') {
          return reply(errorReply(msg.id, INVALID_PARAMS, 'Invalid params', { detail: 'text must be a string' }));
        }
        return this.forward(msg, notification, 'tokenize', 'batch_tokenize', { texts: [params.text], model: params.model }, false);
      case 'detokenize':
        if (!Array.isArray(params.tokens)) {
          return reply(errorReply(msg.id, INVALID_PARAMS, 'Invalid params', { detail: 'tokens must be an array' }));
        }
        return this.forward(msg, notification, 'detokenize', 'detokenize', params, false);
      case 'cancel':
        return reply({ jsonrpc: '2.0', id: msg.id, result: { cancelled: this.cancel(params.id) } });
      case 'health': {
        const ready = workers.filter((w) => w.ready).length;
        const status = ready === 0 ? 'unavailable' : ready < workers.length ? 'degraded' : 'ok';
        return reply({
          jsonrpc: '2.0',
          id: msg.id,
          result: { status, workers_ready: ready, workers_total: workers.length, uptime_s: (Date.now() - started) / 1000, version: VERSION },
        });
      }
      case 'models.list': {
        const byModel = new Map();
        for (const w of workers) {
          if (!w.ready) continue;
          for (const m of w.models) byModel.set(m, [...(byModel.get(m) || []), w.slot]);
        }
        const models = [...byModel].map(([id, ids]) => ({ id, workers: ids, state: 'ready' }));
        return reply({ jsonrpc: '2.0', id: msg.id, result: { models } });
      }
      default:
        return reply(errorReply(msg.id, METHOD_NOT_FOUND, 'Method not found', { method: msg.method }));
    }
  }

  forward(msg, notification, kind, workerMethod, workerParams, stream) {
    if (shuttingDown) {
      if (!notification) this.send(errorReply(msg.id, SHUTTING_DOWN, 'Shutting down'));
      return;
    }
    const worker = pickWorker();
    if (worker === null) {
      if (!notification) this.send(errorReply(msg.id, NO_WORKER, 'No healthy worker', { retry_after_ms: 1000 }));
      return;
    }
    const workerId = worker.nextId++;
    const pending = new Pending(this, msg.id, notification, stream, kind);
    worker.pending.set(workerId, pending);
    this.requests.set(pending, { worker, workerId });
    worker.send({ jsonrpc: '2.0', id: workerId, method: workerMethod, params: workerParams });
  }

  cancel(clientId) {
    let cancelled = false;
    for (const [pending, at] of this.requests) {
      if (pending.clientId !== clientId) continue;
      at.worker.send({ jsonrpc: '2.0', method: 'cancel', params: { id: at.workerId } });
      cancelled = true;
    }
    return cancelled;
  }
}

// ---------------------------------------------------------------------------------------------
// Start and stop

let shuttingDown = false;

function removeStaleSocket(path) {
  try {
    if (fs.lstatSync(path).isSocket()) fs.unlinkSync(path);
  } catch (err) {
    if (err.code !== 'ENOENT') throw err;
  }
}

removeStaleSocket(opts.socket);
const server = net.createServer((socket) => new Client(socket));
server.on('error', (err) => {
  log(`listen on ${opts.socket} failed: ${err.message}`);
  process.exit(1);
});
server.listen(opts.socket, () => log(`listening on ${opts.socket}, ${WORKER_COUNT} workers`));

for (let slot = 0; slot < WORKER_COUNT; slot++) {
  const w = new Worker(slot);
  workers.push(w);
  w.start();
}

function shutdown(signal) {
  if (shuttingDown) return;
  shuttingDown = true;
  log(`${signal}: shutting down`);
  server.close();
  for (const c of clients) c.socket.destroy();
  const live = workers.filter((w) => w.proc && w.proc.exitCode === null && w.proc.signalCode === null);
  let waiting = live.length;
  const done = () => {
    removeStaleSocket(opts.socket);
    process.exit(0);
  };
  if (waiting === 0) return done();
  const force = setTimeout(() => {
    for (const w of live) w.proc.kill('SIGKILL');
  }, 2000);
  for (const w of live) {
    w.proc.once('exit', () => {
      if (--waiting === 0) {
        clearTimeout(force);
        done();
      }
    });
    w.send({ jsonrpc: '2.0', method: 'shutdown' });
    w.proc.stdin.end();
  }
}
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));
