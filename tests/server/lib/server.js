// Starts a real `llm serve` on a free loopback port for the tests, waits for /health,
// and stops it at the end. Also the small helpers the test files share: tokenizing
// with `llm tokenize`, reading /metrics, parsing server-sent events.
//
// Paths come from the environment (CTest sets them), else from the repository layout:
//   LLM_BINARY      the llm executable        (default: <repo>/build/llm)
//   LLM_SHARED_DIR  the shared folder         (default: <repo>/../shared)
//   LLM_ARTIFACTS   where screenshots go      (default: <repo>/build/tests/artifacts)
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '../../..');
export const llmBinary = process.env.LLM_BINARY || path.join(repoRoot, 'build/llm');
export const sharedDir = process.env.LLM_SHARED_DIR || path.resolve(repoRoot, '../shared');
export const modelPath = path.join(sharedDir, 'models/stories260K.gguf');
export const modelId = 'stories260K.gguf';  // the file name: what /v1/models shows by default

export function artifactsDir() {
  const d = process.env.LLM_ARTIFACTS || path.join(repoRoot, 'build/tests/artifacts');
  mkdirSync(d, { recursive: true });
  return d;
}

// Why the suite cannot run here, or null. Test files pass it as `skip`.
export function skipReason() {
  if (!existsSync(llmBinary)) return `llm binary not found at ${llmBinary} (build it first)`;
  if (!existsSync(modelPath)) return `${modelPath} not found (../shared is absent): skipping the server tests`;
  return null;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A running `llm serve`. Use `await LlmServer.start({args: [...]})` and `await server.stop()`.
export class LlmServer {
  constructor(proc) {
    this.proc = proc;
    this.stderr = '';
    this.port = 0;
    this.exitCode = undefined;  // set when the process ended (null when killed by a signal)
    this.exitSignal = null;
    this.exited = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        resolve({ code, signal });
      });
    });
  }

  get url() { return `http://127.0.0.1:${this.port}`; }
  get baseURL() { return `${this.url}/v1`; }

  // extra: more `llm serve` flags. The model has no chat template of its own, so the
  // tests render with the built-in chatml (and check the token counts against it).
  static async start({ args = [], env = {}, timeoutMs = 30000 } = {}) {
    const argv = ['serve', '-m', modelPath, '--port', '0', '--chat-template', 'chatml', ...args];
    const proc = spawn(llmBinary, argv, {
      stdio: ['ignore', 'ignore', 'pipe'],
      // libgomp's default busy-waiting makes every OpenMP region crawl when the 2 cores are
      // shared with other tests and the node clients; passive waiting keeps the timings of
      // this suite stable. (The API behaviour under test does not depend on it.)
      env: { OMP_WAIT_POLICY: 'passive', ...process.env, ...env },
    });
    const s = new LlmServer(proc);
    // Never leave a server behind, even when a test file crashes.
    const killer = () => { try { proc.kill('SIGKILL'); } catch { /* already gone */ } };
    process.once('exit', killer);
    s.exited.then(() => process.removeListener('exit', killer));

    const listening = new Promise((resolve, reject) => {
      proc.stderr.setEncoding('utf8');
      proc.stderr.on('data', (chunk) => {
        s.stderr += chunk;
        const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(s.stderr);
        if (m && !s.port) { s.port = Number(m[1]); resolve(); }
      });
      s.exited.then(({ code, signal }) =>
        reject(new Error(`llm serve exited (code ${code}, signal ${signal}) before listening:\n${s.stderr}`)));
    });
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`llm serve did not start in ${timeoutMs} ms:\n${s.stderr}`)), timeoutMs);
    });
    try {
      await Promise.race([listening, timeout]);
      clearTimeout(timer);
      // Ready when /health answers 200.
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        try {
          const r = await fetch(`${s.url}/health`);
          if (r.status === 200) break;
        } catch { /* not yet */ }
        if (Date.now() > deadline) throw new Error(`/health never answered 200:\n${s.stderr}`);
        await sleep(50);
      }
    } catch (e) {
      clearTimeout(timer);
      killer();
      throw e;
    }
    return s;
  }

  // SIGTERM, then SIGKILL after `graceMs`. Resolves to {code, signal}.
  async stop(graceMs = 15000) {
    if (this.exitCode === undefined) {
      this.proc.kill('SIGTERM');
      const t = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(t);
    }
    return { code: this.exitCode, signal: this.exitSignal };
  }

  async health() {
    const r = await fetch(`${this.url}/health`);
    return r.status;
  }

  // /metrics as a map from "name" or "name{labels}" to a number.
  async metrics() {
    const r = await fetch(`${this.url}/metrics`);
    if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
    const m = new Map();
    for (const line of (await r.text()).split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const sp = line.lastIndexOf(' ');
      m.set(line.slice(0, sp), Number(line.slice(sp + 1)));
    }
    return m;
  }

  // POST JSON with fetch (no SDK): returns {status, headers, json}.
  async post(route, body, headers = {}) {
    const r = await fetch(`${this.url}${route}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await r.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* left null */ }
    return { status: r.status, headers: r.headers, text, json };
  }
}

// Token ids of `text` under the model's tokenizer, as `llm tokenize --bos` gives them
// (BOS added; control-token texts parsed as the server does for rendered templates).
export function tokenize(text) {
  const out = execFileSync(llmBinary, ['tokenize', '-m', modelPath, '--bos', '-f', '-'], { input: text });
  return out.toString().trim().split(/\s+/).filter(Boolean).map(Number);
}

// The ChatML rendering of a conversation with the generation prompt
// ("<|im_start|>ROLE\nCONTENT<|im_end|>\n" per message, then "<|im_start|>assistant\n"),
// written here independently of the server's Jinja engine.
export function chatml(messages) {
  let s = '';
  for (const m of messages) s += `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`;
  return s + '<|im_start|>assistant\n';
}

// Server-sent events of a finished response body: the `data:` payloads in order.
export function sseData(body) {
  const out = [];
  for (const ev of body.split('\n\n')) {
    if (!ev.trim()) continue;
    const lines = ev.split('\n').filter((l) => l.startsWith('data: '));
    if (lines.length !== 1) throw new Error(`malformed event: ${JSON.stringify(ev)}`);
    out.push(lines[0].slice(6));
  }
  return out;
}

// Polls `fn` every `everyMs` until it returns a truthy value or `timeoutMs` passes.
export async function waitFor(fn, { timeoutMs = 5000, everyMs = 25 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) return v;
    await sleep(everyMs);
  }
}
