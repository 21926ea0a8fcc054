// Concurrency and lifecycle of `llm serve`: 64 streaming clients at once, a full queue
// (429), a client that goes away mid-stream (its KV blocks freed, seen in /metrics), and
// SIGTERM while streams are in flight (they finish, or are cut at the deadline; exit 0).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { LlmServer, skipReason, modelId, tokenize, chatml, sleep, waitFor } from './lib/server.js';

const skip = skipReason() ?? false;

function sdk(server) {
  return new OpenAI({ baseURL: server.baseURL, apiKey: 'x', maxRetries: 0, timeout: 120000 });
}

// Reads an SDK chat stream: text, finish reasons, streamed logprob entries, usage.
async function drain(stream, onChunk = () => {}) {
  const s = { text: '', finish: [], tokens: 0, usage: null, chunks: 0 };
  for await (const c of stream) {
    ++s.chunks;
    onChunk(c, s);
    if (c.usage) s.usage = c.usage;
    for (const ch of c.choices) {
      if (ch.delta?.content) s.text += ch.delta.content;
      if (ch.finish_reason) s.finish.push(ch.finish_reason);
      s.tokens += ch.logprobs?.content?.length ?? 0;
    }
  }
  return s;
}

const kvUsed = (m) => m.get('llm_kv_cache_blocks{state="used"}');
const running = (m) => m.get('llm_requests_running');
const waiting = (m) => m.get('llm_requests_waiting');

describe('load', { skip }, () => {
  let server;
  before(async () => { server = await LlmServer.start(); });
  after(async () => {
    const { code } = await server.stop();
    assert.equal(code, 0, server.stderr);
  });

  test('64 concurrent streaming clients all finish with exact usage', async () => {
    const client = sdk(server);
    const prompts = ['Tell me a story.', 'Once upon a time', 'Tom and his dog', 'What did Lily see?'];
    const promptTokens = prompts.map((p) => tokenize(chatml([{ role: 'user', content: p }])).length);
    const before = await server.metrics();
    const t0 = Date.now();
    const results = await Promise.all(Array.from({ length: 64 }, async (_, i) => {
      const req = {
        model: modelId,
        messages: [{ role: 'user', content: prompts[i % 4] }],
        max_tokens: 8 + (i % 25),
        temperature: i % 2 ? 1 : 0,
        seed: i,
        logprobs: true,
        stream: true,
        stream_options: { include_usage: true },
      };
      if (i % 3 === 0) req.stop = ['.', '!'];
      return { i, req, ...(await drain(await client.chat.completions.create(req))) };
    }));
    const elapsed = (Date.now() - t0) / 1000;
    let total = 0;
    for (const r of results) {
      assert.equal(r.finish.length, 1, `client ${r.i}: finish reasons ${r.finish}`);
      assert.ok(r.usage, `client ${r.i}: no usage chunk`);
      assert.equal(r.usage.prompt_tokens, promptTokens[r.i % 4], `client ${r.i}`);
      if (r.finish[0] === 'length') {
        assert.equal(r.usage.completion_tokens, r.req.max_tokens, `client ${r.i}`);
      } else {
        assert.equal(r.finish[0], 'stop', `client ${r.i}`);
        assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= r.req.max_tokens, `client ${r.i}`);
        if (r.req.stop) assert.ok(!/[.!]/.test(r.text), `client ${r.i}: stop string in ${JSON.stringify(r.text)}`);
      }
      assert.equal(r.tokens, r.usage.completion_tokens, `client ${r.i}: streamed tokens`);
      total += r.usage.completion_tokens;
    }
    assert.ok(results.some((r) => r.finish[0] === 'stop'), 'no client stopped on a stop string');
    const m = await waitFor(async () => {
      const m = await server.metrics();
      return running(m) === 0 && waiting(m) === 0 && kvUsed(m) === 0 ? m : null;
    });
    assert.ok(m, 'requests or KV blocks still held after all clients finished');
    const finished = (x) => x.get('llm_requests_finished_total{reason="stop"}') + x.get('llm_requests_finished_total{reason="length"}');
    assert.equal(finished(m) - finished(before), 64);
    assert.equal(m.get('llm_generation_tokens_total') - before.get('llm_generation_tokens_total'), total);
    console.log(`# 64 streams, ${total} tokens in ${elapsed.toFixed(1)} s (${(total / elapsed).toFixed(0)} tok/s)`);

    // Batching does not change what a request gets: greedy ones alone give the same text.
    for (const r of results.filter((x) => x.req.temperature === 0).slice(0, 4)) {
      const alone = await drain(await client.chat.completions.create(r.req));
      assert.equal(alone.text, r.text, `client ${r.i} alone differs from its batched answer`);
    }
  });

  test('a client that disconnects mid-stream is cancelled and its KV blocks freed', async () => {
    const client = sdk(server);
    const n = 8;
    const maxTokens = 900;
    // Left alone this would take 8 x 900 tokens and end holding about 8 x 57 blocks.
    const stream = await client.chat.completions.create({
      model: modelId, messages: [{ role: 'user', content: 'Tell me a long story.' }],
      n, max_tokens: maxTokens, ignore_eos: true, temperature: 1, seed: 1, stream: true,
    });
    let seen = 0;
    for await (const c of stream) {
      if (c.choices[0]?.delta?.content && ++seen === 3) break;  // leaving the loop aborts the request
    }
    const atAbort = await server.metrics();
    const t0 = Date.now();
    let maxUsed = kvUsed(atAbort);
    const freed = await waitFor(async () => {
      const m = await server.metrics();
      maxUsed = Math.max(maxUsed, kvUsed(m));
      return running(m) === 0 && kvUsed(m) === 0;
    }, { timeoutMs: 5000, everyMs: 10 });
    const ms = Date.now() - t0;
    assert.ok(freed, `blocks not freed 5 s after the disconnect: ${JSON.stringify(Object.fromEntries(await server.metrics()))}`);
    const fullBlocks = n * Math.ceil(maxTokens / 16);
    assert.ok(maxUsed < fullBlocks / 2, `KV use kept growing after the disconnect (max ${maxUsed} of ${fullBlocks} blocks)`);
    console.log(`# freed ${ms} ms after the disconnect (max ${maxUsed} blocks used meanwhile)`);
    assert.equal(await server.health(), 200);
  });
});

describe('queue limit', { skip }, () => {
  let server;
  before(async () => { server = await LlmServer.start({ args: ['--parallel', '1', '--max-queue', '2'] }); });
  after(async () => { await server.stop(); });

  test('beyond --max-queue waiting requests: 429 with Retry-After, the rest are served', async () => {
    const client = sdk(server);
    const outcomes = await Promise.all(Array.from({ length: 12 }, async () => {
      try {
        const r = await client.chat.completions.create({
          model: modelId, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 300, ignore_eos: true, temperature: 0,
        });
        assert.equal(r.usage.completion_tokens, 300);
        return 200;
      } catch (e) {
        assert.ok(e instanceof OpenAI.RateLimitError, `${e.constructor.name}: ${e.message}`);
        assert.ok(Number(e.headers.get('retry-after')) >= 1);
        assert.equal(e.code, 'rate_limit_exceeded');
        return 429;
      }
    }));
    assert.ok(outcomes.includes(200), `${outcomes}`);
    assert.ok(outcomes.includes(429), `${outcomes}`);
  });
});

describe('graceful shutdown', { skip }, () => {
  test('SIGTERM: the stream in flight completes, new requests are refused, exit 0', async () => {
    const server = await LlmServer.start({ args: ['--shutdown-timeout', '60'] });
    try {
      const client = sdk(server);
      const stream = await client.chat.completions.create({
        model: modelId, messages: [{ role: 'user', content: 'Tell me a story.' }], max_tokens: 400, ignore_eos: true,
        temperature: 0, logprobs: true, stream: true, stream_options: { include_usage: true },
      });
      let signalled = false;
      let refused = null;
      const s = await drain(stream, (c) => {
        if (!signalled && c.choices[0]?.delta?.content) {
          signalled = true;
          server.proc.kill('SIGTERM');
          refused = (async () => {
            await sleep(100);
            try {
              const r = await fetch(`${server.url}/health`);
              return r.status;  // 503 while draining
            } catch {
              return 'refused';
            }
          })();
        }
      });
      assert.ok(signalled);
      assert.deepEqual(s.finish, ['length']);
      assert.equal(s.usage.completion_tokens, 400);
      assert.equal(s.tokens, 400);
      assert.ok([503, 'refused'].includes(await refused), `health during shutdown: ${await refused}`);
      const t0 = Date.now();
      const { code, signal } = await server.exited;
      assert.equal(signal, null);
      assert.equal(code, 0, server.stderr);
      assert.ok(Date.now() - t0 < 15000, 'exit took too long after the stream ended');
      assert.match(server.stderr, /SIGTERM received/);
    } finally {
      await server.stop();
    }
  });

  test('SIGTERM: a stream longer than the grace period is cut at the deadline, exit 0', async () => {
    const server = await LlmServer.start({ args: ['--shutdown-timeout', '1'] });
    try {
      const client = sdk(server);
      const n = 8;
      const maxTokens = 1500;
      const stream = await client.chat.completions.create({
        model: modelId, messages: [{ role: 'user', content: 'Tell me a story.' }], n, max_tokens: maxTokens,
        ignore_eos: true, temperature: 1, seed: 2, stream: true, stream_options: { include_usage: true },
      });
      let t0 = 0;
      let ended;
      try {
        ended = await drain(stream, (c) => {
          if (!t0 && c.choices[0]?.delta?.content) {
            t0 = Date.now();
            server.proc.kill('SIGTERM');
          }
        });
      } catch (e) {
        ended = { error: e };  // the connection may close under the client: also an end
      }
      const { code } = await server.exited;
      const took = Date.now() - t0;
      assert.equal(code, 0, server.stderr);
      assert.ok(took < 1000 + 10000, `exit ${took} ms after SIGTERM with a 1 s grace period`);
      if (!ended.error && ended.usage) {
        // Cut short: fewer tokens than asked for, every choice finished.
        assert.ok(ended.usage.completion_tokens < n * maxTokens, 'nothing was cut: the grace period was not applied');
        assert.equal(ended.finish.length, n);
      }
      console.log(`# exited ${took} ms after SIGTERM; stream ${ended.error ? `ended with ${ended.error.message}` : `got ${ended.usage?.completion_tokens} tokens`}`);
    } finally {
      await server.stop();
    }
  });
});
