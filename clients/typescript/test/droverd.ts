// Test fixture: a real droverd with sim workers in a private temp dir (the TypeScript
// counterpart of tests/integration/harness.hpp). Binaries come from the environment CTest
// sets: DROVERD_BIN, DROVER_WORKER_BIN, DROVERCTL_BIN. Every wait polls a condition against a
// deadline. CTest runs the tests under tests/clients/run_as_subreaper.py, which reaps the
// workers of a droverd a test SIGKILLs.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

import { DroverClient } from 'drover-client';

export const WAIT_MS = 60_000;  // generous: a loaded 2-core machine
/** Add to serverYaml for a JSON-RPC TCP listener on a port of the kernel's choice. */
export const TCP_LISTEN = 'tcp_listen: "127.0.0.1:0"';
// droverd's log line for its JSON-RPC TCP listener (server.tcp_listen).
const kTcpLog = /JSON-RPC on tcp:\/\/(\S+?:\d+)/g;

function binary(name: string): string {
  const p = process.env[name];
  if (!p) throw new Error(`${name} is not set (CTest sets it to the built binary)`);
  return p;
}

export async function waitUntil(pred: () => boolean | Promise<boolean>, what: string, timeoutMs = WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(20);  // paces the poll; the condition is what is waited on
  }
}

interface Worker {
  id: number;
  pid: number;
  state: string;
  inflight: number;
}

export class Droverd {
  readonly dir = fs.mkdtempSync('/tmp/drover-ts-');
  readonly socket = path.join(this.dir, 'c.sock');
  readonly adminSocket = path.join(this.dir, 'a.sock');
  private readonly config = path.join(this.dir, 'droverd.yaml');
  private readonly log = path.join(this.dir, 'droverd.log');
  private proc: ChildProcess | undefined;
  private exited: Promise<number | null> | undefined;
  private readonly seenPids = new Set<number>();

  constructor(readonly workersCount = 2, tokensPerS = 200, serverYaml: string[] = []) {
    const q = JSON.stringify;
    const lines = ['server:', `  socket: ${q(this.socket)}`, `  admin_socket: ${q(this.adminSocket)}`,
      `  run_dir: ${q(path.join(this.dir, 'run'))}`, ...serverYaml.map((l) => '  ' + l),
      'workers:', `  count: ${workersCount}`, '  backend: sim',
      `  command: [${q(binary('DROVER_WORKER_BIN'))}, "--tokens-per-s", "${tokensPerS}"]`,
      '  drain_timeout_ms: 2000', 'metrics:', '  listen: ""', 'logging:', '  level: info'];
    fs.writeFileSync(this.config, lines.join('\n') + '\n');
  }

  async start(): Promise<this> {
    this.launch();
    await this.waitReady();
    return this;
  }

  launch(): void {
    const out = fs.openSync(this.log, 'a');
    const proc = spawn(binary('DROVERD_BIN'), ['--config', this.config], { stdio: ['ignore', out, out] });
    fs.closeSync(out);
    this.proc = proc;
    this.exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
  }

  async waitReady(): Promise<void> {
    await waitUntil(async () => {
      if (this.proc?.exitCode !== null) throw new Error(`droverd exited during start-up:\n${this.logText()}`);
      try {
        return (await this.workers()).filter((w) => w.state === 'ready').length === this.workersCount;
      } catch {
        return false;
      }
    }, 'droverd ready');
  }

  async admin<T>(method: string, params?: unknown): Promise<T> {
    const c = await DroverClient.connect({ socket: this.adminSocket, connectTimeoutMs: 500, timeoutMs: WAIT_MS });
    try {
      return await c.call<T>(method, params);
    } finally {
      await c.close();
    }
  }

  async workers(): Promise<Worker[]> {
    const { workers } = await this.admin<{ workers: Worker[] }>('workers.list');
    for (const w of workers) if (w.pid) this.seenPids.add(w.pid);
    return workers;
  }

  async inflight(): Promise<number> {
    return (await this.workers()).reduce((n, w) => n + w.inflight, 0);
  }

  /** SIGKILLs droverd (a crash): its workers die with it (PR_SET_PDEATHSIG). */
  async kill(): Promise<void> {
    await this.workers();
    this.proc!.kill('SIGKILL');
    await this.exited;
    await this.waitPidsGone();
  }

  async close(): Promise<void> {
    try {
      if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
        await this.workers().catch(() => []);
        this.proc.kill('SIGTERM');
        const code = await Promise.race([this.exited, delay(WAIT_MS, undefined, { ref: false }).then(() => 'timeout' as const)]);
        if (code === 'timeout') {
          this.proc.kill('SIGKILL');
          await this.exited;
          throw new Error('droverd did not exit on SIGTERM');
        }
        if (code !== 0) throw new Error(`droverd exited ${code} after SIGTERM:\n${this.logText()}`);
      }
      await this.waitPidsGone();
    } finally {
      fs.rmSync(this.dir, { recursive: true, force: true });
    }
  }

  /** tcp://HOST:PORT of the JSON-RPC TCP listener, from the log of the last start. */
  tcpAddress(): string {
    const found = [...fs.readFileSync(this.log, 'utf8').matchAll(kTcpLog)];
    if (found.length === 0) throw new Error(`no TCP listener in the log:\n${this.logText()}`);
    return `tcp://${found[found.length - 1][1]}`;
  }

  /** The next start listens on the port this one got (a client keeps its address). */
  pinTcpPort(): void {
    const port = this.tcpAddress().split(':').pop();
    const text = fs.readFileSync(this.config, 'utf8');
    fs.writeFileSync(this.config, text.replace(/tcp_listen: "127\.0\.0\.1:\d+"/, `tcp_listen: "127.0.0.1:${port}"`));
  }

  private async waitPidsGone(): Promise<void> {
    const gone = (pid: number) => {
      try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
        return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');  // a zombie awaiting its reaper
      } catch {
        return true;
      }
    };
    await waitUntil(() => [...this.seenPids].every(gone), 'worker processes gone');
  }

  logText(): string {
    try {
      return fs.readFileSync(this.log, 'utf8').slice(-4000);
    } catch {
      return '';
    }
  }

  /** Runs droverctl --json against this droverd; its JSON values, in order. */
  droverctl(...args: string[]): Promise<any[]> {
    return new Promise((resolve, reject) => {
      execFile(binary('DROVERCTL_BIN'), ['--socket', this.socket, '--json', ...args], { timeout: WAIT_MS },
        (error, stdout, stderr) => {
          if (error) return reject(new Error(`droverctl ${args.join(' ')}: ${error.message} ${stderr}`));
          resolve(parseConcatenatedJson(stdout));
        });
    });
  }
}

// droverctl --json prints notifications one per line, then the result indented over lines.
function parseConcatenatedJson(text: string): any[] {
  const lines = text.split('\n');
  const out: any[] = [];
  let pending = '';
  for (const line of lines) {
    pending += line + '\n';
    try {
      out.push(JSON.parse(pending));
      pending = '';
    } catch {
      // not complete yet
    }
  }
  if (pending.trim()) throw new Error(`droverctl printed what is not JSON: ${pending}`);
  return out;
}

