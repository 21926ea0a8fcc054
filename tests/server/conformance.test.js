// Conformance of `llm serve` with the official `openai` SDK: what a client written for
// the OpenAI API reads must be there, shaped as OpenAI shapes it, with exact usage.
// The model (stories260K) is tiny and has no chat template: the server renders chatml,
// and token counts are checked against `llm tokenize` of an independent chatml rendering.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { LlmServer, skipReason, modelId, tokenize, chatml, sseData } from './lib/server.js';

const greedy = { temperature: 0 };
const story = [{ role: 'user', content: 'Tell me a story about a cat.' }];

// Chunks of an SDK stream, in order.
async function collect(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

// Per choice index: the concatenated content, the finish reasons seen, the logprob entries.
function assemble(chunks) {
  const by = new Map();
  for (const c of chunks) {
    for (const ch of c.choices) {
      if (!by.has(ch.index)) by.set(ch.index, { text: '', finish: [], logprobs: [], roles: [] });
      const s = by.get(ch.index);
      if (ch.delta?.role) s.roles.push(ch.delta.role);
      if (typeof ch.delta?.content === 'string') s.text += ch.delta.content;
      if (typeof ch.text === 'string') s.text += ch.text;
      if (ch.finish_reason) s.finish.push(ch.finish_reason);
      if (ch.logprobs?.content) s.logprobs.push(...ch.logprobs.content);
    }
  }
  return by;
}

// A stop string that starts inside one token and ends in a later one, found at its first
// occurrence in the text of `toks` (the greedy output): {stop, at, nTokens}: its offset and
// how many tokens are generated until it is complete.
// Prefers one that also ends inside a token.
function spanningStop(toks) {
  const text = toks.join('');
  for (const endInside of [true, false]) {
    for (let i = 0, off = 0; i + 1 < toks.length; off += toks[i].length, ++i) {
      const a = toks[i];
      const b = toks[i + 1];
      if (a.length < 2 || (endInside && b.length < 2)) continue;
      const stop = a.slice(1) + (endInside ? b.slice(0, -1) : b);
      // Generation stops with token i + 1: the first one that completes the stop string.
      if (off > 0 && text.indexOf(stop) === off + 1) return { stop, at: off + 1, nTokens: i + 2 };
    }
  }
  assert.fail(`no token-spanning stop string in ${JSON.stringify(toks)}`);
}

function checkTopLogprobs(entries, k, { greedyChoice }) {
  for (const e of entries) {
    assert.ok(e.logprob <= 0, `logprob ${e.logprob} > 0`);
    assert.deepEqual(e.bytes, [...Buffer.from(e.token, 'utf8')]);
    assert.equal(e.top_logprobs.length, k);
    let mass = 0;
    for (let i = 0; i < e.top_logprobs.length; ++i) {
      const t = e.top_logprobs[i];
      assert.ok(t.logprob <= 0);
      if (i > 0) assert.ok(t.logprob <= e.top_logprobs[i - 1].logprob, 'top_logprobs not sorted best first');
      mass += Math.exp(t.logprob);
    }
    assert.ok(mass <= 1 + 1e-4, `top_logprobs hold probability ${mass} > 1`);
    if (greedyChoice && k > 0) {
      assert.equal(e.top_logprobs[0].token, e.token, 'greedy choice is not the most likely token');
      assert.ok(Math.abs(e.top_logprobs[0].logprob - e.logprob) < 1e-5);
    }
  }
}

describe('openai SDK conformance', { skip: skipReason() ?? false }, () => {
  let server;
  let client;
  before(async () => {
    server = await LlmServer.start();
    client = new OpenAI({ baseURL: server.baseURL, apiKey: 'not-needed', maxRetries: 0, timeout: 60000 });
  });
  after(async () => {
    const { code } = await server.stop();
    assert.equal(code, 0, `llm serve exited with ${code}:\n${server.stderr}`);
  });

  test('chat: non-streaming response, exact usage', async () => {
    const messages = [{ role: 'system', content: 'You are a storyteller.' }, ...story];
    const r = await client.chat.completions.create({ model: modelId, messages, max_tokens: 12, ...greedy });
    assert.match(r.id, /^chatcmpl-/);
    assert.equal(r.object, 'chat.completion');
    assert.ok(Math.abs(r.created - Date.now() / 1000) < 600, 'created is not a unix time of now');
    assert.equal(r.model, modelId);
    assert.equal(r.choices.length, 1);
    const c = r.choices[0];
    assert.equal(c.index, 0);
    assert.equal(c.message.role, 'assistant');
    assert.equal(typeof c.message.content, 'string');
    assert.ok(c.message.content.length > 0);
    assert.equal(c.finish_reason, 'length');
    assert.equal(c.logprobs, null);
    assert.equal(r.usage.prompt_tokens, tokenize(chatml(messages)).length);
    assert.equal(r.usage.completion_tokens, 12);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 12);
  });

  test('chat: developer role renders as system, content-part arrays as text', async () => {
    const a = await client.chat.completions.create({
      model: modelId, max_tokens: 8, ...greedy,
      messages: [{ role: 'developer', content: 'Be brief.' }, { role: 'user', content: [{ type: 'text', text: 'Hi ' }, { type: 'text', text: 'there' }] }],
    });
    const b = await client.chat.completions.create({
      model: modelId, max_tokens: 8, ...greedy,
      messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi there' }],
    });
    assert.equal(a.usage.prompt_tokens, tokenize(chatml([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi there' }])).length);
    assert.equal(a.choices[0].message.content, b.choices[0].message.content);
  });

  test('chat: streaming chunks (role first, deltas, finish_reason, usage chunk) match the whole answer', async () => {
    const whole = await client.chat.completions.create({ model: modelId, messages: story, max_tokens: 20, ...greedy });
    const chunks = await collect(await client.chat.completions.create({
      model: modelId, messages: story, max_tokens: 20, ...greedy,
      stream: true, stream_options: { include_usage: true }, logprobs: true,
    }));
    assert.ok(chunks.length >= 4);
    const id = chunks[0].id;
    assert.match(id, /^chatcmpl-/);
    for (const c of chunks) {
      assert.equal(c.id, id);
      assert.equal(c.object, 'chat.completion.chunk');
      assert.equal(c.model, modelId);
    }
    // The first chunk carries the role and no text.
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    assert.ok(!chunks[0].choices[0].delta.content);
    // The last chunk has no choices and the usage; every other one has usage null.
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, []);
    for (const c of chunks.slice(0, -1)) assert.equal(c.usage, null);
    // finish_reason exactly once, on the last chunk with a choice.
    const s = assemble(chunks).get(0);
    assert.deepEqual(s.finish, ['length']);
    assert.equal(chunks.at(-2).choices[0].finish_reason, 'length');
    assert.deepEqual(s.roles, ['assistant']);
    assert.equal(s.text, whole.choices[0].message.content);
    // Exact usage: the rendered prompt's tokens; one streamed token per completion token.
    assert.equal(last.usage.prompt_tokens, tokenize(chatml(story)).length);
    assert.equal(last.usage.completion_tokens, 20);
    assert.equal(last.usage.total_tokens, last.usage.prompt_tokens + 20);
    assert.equal(s.logprobs.length, last.usage.completion_tokens);
    assert.equal(s.logprobs.map((e) => e.token).join(''), s.text);
    const counts = (u) => [u.prompt_tokens, u.completion_tokens, u.total_tokens];
    assert.deepEqual(counts(whole.usage), counts(last.usage));
  });

  test('chat: raw event stream is data: lines ending in [DONE]; no usage field unless asked', async () => {
    for (const include_usage of [false, true]) {
      const body = { model: modelId, messages: story, max_tokens: 5, ...greedy, stream: true };
      if (include_usage) body.stream_options = { include_usage };
      const r = await fetch(`${server.baseURL}/chat/completions`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
      });
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type'), /^text\/event-stream/);
      const events = sseData(await r.text());
      assert.equal(events.at(-1), '[DONE]');
      assert.equal(events.filter((e) => e === '[DONE]').length, 1);
      const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
      for (const c of chunks) assert.equal('usage' in c, include_usage);
      assert.equal(chunks.filter((c) => c.usage).length, include_usage ? 1 : 0);
    }
  });

  test('completions: string prompt, default max_tokens 16, exact usage', async () => {
    const prompt = 'Once upon a time';
    const r = await client.completions.create({ model: modelId, prompt, ...greedy });
    assert.match(r.id, /^cmpl-/);
    assert.equal(r.object, 'text_completion');
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage.prompt_tokens, tokenize(prompt).length);
    assert.equal(r.usage.completion_tokens, 16);
    assert.ok(r.choices[0].text.length > 0);
  });

  test('completions: array of prompts, token-id prompts, echo', async () => {
    const p1 = 'Once upon a time';
    const p2 = 'Tom had a red ball.';
    const one = async (prompt, extra = {}) =>
      client.completions.create({ model: modelId, prompt, max_tokens: 10, ...greedy, ...extra });
    const a = await one(p1);
    const b = await one(p2);
    const both = await one([p1, p2]);
    assert.deepEqual(both.choices.map((c) => c.index), [0, 1]);
    assert.equal(both.choices[0].text, a.choices[0].text);
    assert.equal(both.choices[1].text, b.choices[0].text);
    assert.equal(both.usage.prompt_tokens, a.usage.prompt_tokens + b.usage.prompt_tokens);
    assert.equal(both.usage.completion_tokens, 20);

    // Token ids (with BOS, as the server adds it to text prompts) give the same answer.
    const ids1 = tokenize(p1);
    const ids2 = tokenize(p2);
    const t = await one(ids1);
    assert.equal(t.choices[0].text, a.choices[0].text);
    assert.equal(t.usage.prompt_tokens, ids1.length);
    const tt = await one([ids1, ids2]);
    assert.deepEqual(tt.choices.map((c) => c.text), [a.choices[0].text, b.choices[0].text]);

    const e = await one(p1, { echo: true });
    assert.equal(e.choices[0].text, p1 + a.choices[0].text);
  });

  test('completions: streaming matches the whole answer, usage chunk last', async () => {
    const prompt = 'Lily and Ben went to the park.';
    const whole = await client.completions.create({ model: modelId, prompt, max_tokens: 15, ...greedy });
    const chunks = await collect(await client.completions.create({
      model: modelId, prompt, max_tokens: 15, ...greedy, stream: true, stream_options: { include_usage: true },
    }));
    for (const c of chunks) assert.equal(c.object, 'text_completion');
    const s = assemble(chunks).get(0);
    assert.equal(s.text, whole.choices[0].text);
    assert.deepEqual(s.finish, ['length']);
    assert.deepEqual(chunks.at(-1).choices, []);
    const u = chunks.at(-1).usage;
    assert.deepEqual([u.prompt_tokens, u.completion_tokens], [whole.usage.prompt_tokens, whole.usage.completion_tokens]);
  });

  test('completions: legacy logprobs', async () => {
    const r = await client.completions.create({ model: modelId, prompt: 'The dog', max_tokens: 12, logprobs: 3, ...greedy });
    const c = r.choices[0];
    const lp = c.logprobs;
    assert.equal(lp.tokens.length, r.usage.completion_tokens);
    assert.equal(lp.token_logprobs.length, lp.tokens.length);
    assert.equal(lp.top_logprobs.length, lp.tokens.length);
    assert.equal(lp.text_offset.length, lp.tokens.length);
    assert.equal(lp.tokens.join(''), c.text);
    for (let i = 0; i < lp.tokens.length; ++i) {
      assert.ok(lp.token_logprobs[i] <= 0);
      const top = Object.entries(lp.top_logprobs[i]);
      assert.ok(top.length >= 1 && top.length <= 3);
      const best = Math.max(...top.map(([, v]) => v));
      assert.ok(Math.abs(best - lp.token_logprobs[i]) < 1e-5, 'greedy token is not the most likely one');
      assert.equal(lp.top_logprobs[i][lp.tokens[i]], lp.token_logprobs[i]);
      if (i > 0) assert.equal(lp.text_offset[i] - lp.text_offset[i - 1], lp.tokens[i - 1].length);
    }
  });

  test('completions: streamed logprobs cover every token', async () => {
    const chunks = await collect(await client.completions.create({
      model: modelId, prompt: 'The dog', max_tokens: 12, logprobs: 2, ...greedy, stream: true,
      stream_options: { include_usage: true },
    }));
    const tokens = [];
    let text = '';
    for (const c of chunks) {
      for (const ch of c.choices) {
        text += ch.text;
        assert.ok(ch.logprobs || ch.text === '', 'a chunk with text has no logprobs');
        if (ch.logprobs) tokens.push(...ch.logprobs.tokens);
      }
    }
    assert.equal(tokens.length, chunks.at(-1).usage.completion_tokens);
    assert.equal(tokens.join(''), text);
  });

  test('models: list and retrieve', async () => {
    const list = [];
    for await (const m of client.models.list()) list.push(m);
    assert.equal(list.length, 1);
    assert.equal(list[0].id, modelId);
    assert.equal(list[0].object, 'model');
    assert.equal(typeof list[0].created, 'number');
    assert.equal(typeof list[0].owned_by, 'string');
    const m = await client.models.retrieve(modelId);
    assert.deepEqual({ ...m }, { ...list[0] });
    await assert.rejects(client.models.retrieve('gpt-nonexistent'), (e) => {
      assert.ok(e instanceof OpenAI.NotFoundError);
      assert.equal(e.code, 'model_not_found');
      return true;
    });
  });

  test('n = 2: two choices, streamed per index like the whole answer', async () => {
    const req = { model: modelId, messages: story, max_tokens: 16, temperature: 1, seed: 7, n: 2 };
    const whole = await client.chat.completions.create(req);
    assert.deepEqual(whole.choices.map((c) => c.index), [0, 1]);
    assert.notEqual(whole.choices[0].message.content, whole.choices[1].message.content);
    assert.equal(whole.usage.prompt_tokens, tokenize(chatml(story)).length);  // counted once
    assert.equal(whole.usage.completion_tokens, 32);
    const chunks = await collect(await client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } }));
    const by = assemble(chunks);
    assert.deepEqual([...by.keys()].sort(), [0, 1]);
    for (const i of [0, 1]) {
      assert.deepEqual(by.get(i).roles, ['assistant']);
      assert.deepEqual(by.get(i).finish, ['length']);
      assert.equal(by.get(i).text, whole.choices[i].message.content);
    }
    const u = chunks.at(-1).usage;
    assert.deepEqual([u.prompt_tokens, u.completion_tokens], [whole.usage.prompt_tokens, whole.usage.completion_tokens]);
  });

  test('logprobs and top_logprobs: values <= 0, sorted, greedy token on top', async () => {
    const r = await client.chat.completions.create({
      model: modelId, messages: story, max_tokens: 16, logprobs: true, top_logprobs: 5, ...greedy,
    });
    const content = r.choices[0].logprobs.content;
    assert.equal(content.length, 16);
    checkTopLogprobs(content, 5, { greedyChoice: true });
    assert.equal(content.map((e) => e.token).join(''), r.choices[0].message.content);

    // logprobs without top_logprobs: each entry has an empty top list (as OpenAI answers).
    const r0 = await client.chat.completions.create({ model: modelId, messages: story, max_tokens: 4, logprobs: true, ...greedy });
    checkTopLogprobs(r0.choices[0].logprobs.content, 0, { greedyChoice: true });

    // Streamed: the same entries, spread over the chunks.
    const chunks = await collect(await client.chat.completions.create({
      model: modelId, messages: story, max_tokens: 16, logprobs: true, top_logprobs: 5, ...greedy, stream: true,
    }));
    const streamed = assemble(chunks).get(0).logprobs;
    assert.deepEqual(streamed.map((e) => e.token), content.map((e) => e.token));
    for (let i = 0; i < content.length; ++i) assert.ok(Math.abs(streamed[i].logprob - content[i].logprob) < 1e-5);
  });

  test('stop: string and list, across token boundaries, never in the output', async () => {
    const base = await client.chat.completions.create({ model: modelId, messages: story, max_tokens: 40, logprobs: true, ...greedy });
    const text = base.choices[0].message.content;
    const toks = base.choices[0].logprobs.content.map((e) => e.token);
    const { stop, at, nTokens } = spanningStop(toks);
    const expected = text.slice(0, at);

    for (const s of [stop, ['\u0007never', stop]]) {
      const r = await client.chat.completions.create({ model: modelId, messages: story, max_tokens: 40, stop: s, logprobs: true, ...greedy });
      assert.equal(r.choices[0].message.content, expected, `stop ${JSON.stringify(s)}`);
      assert.equal(r.choices[0].finish_reason, 'stop');
      assert.equal(r.usage.completion_tokens, nTokens);
      assert.equal(r.choices[0].logprobs.content.length, nTokens);
    }
    // Streamed: the held-back prefix of the stop string never reaches the client.
    const chunks = await collect(await client.chat.completions.create({
      model: modelId, messages: story, max_tokens: 40, stop: [stop], ...greedy, stream: true,
      logprobs: true, stream_options: { include_usage: true },
    }));
    const s = assemble(chunks).get(0);
    assert.equal(s.text, expected);
    assert.deepEqual(s.finish, ['stop']);
    assert.equal(s.logprobs.length, nTokens);
    assert.equal(chunks.at(-1).usage.completion_tokens, nTokens);
    assert.ok(!chunks.some((c) => c.choices[0]?.delta?.content?.includes(stop)));

    // Completions endpoint too (its story tokens are longer: a stop string there can start
    // and end in the middle of tokens).
    const prompt = 'Once upon a time';
    const cbase = await client.completions.create({ model: modelId, prompt, max_tokens: 30, logprobs: 0, ...greedy });
    const ct = cbase.choices[0].text;
    const c = spanningStop(cbase.choices[0].logprobs.tokens);
    for (const stream of [false, true]) {
      const req = { model: modelId, prompt, max_tokens: 30, stop: c.stop, ...greedy };
      let got;
      if (stream) {
        const chunks = await collect(await client.completions.create({ ...req, stream: true, stream_options: { include_usage: true } }));
        got = { ...assemble(chunks).get(0), usage: chunks.at(-1).usage };
      } else {
        const r = await client.completions.create(req);
        got = { text: r.choices[0].text, finish: [r.choices[0].finish_reason], usage: r.usage };
      }
      assert.equal(got.text, ct.slice(0, c.at), `stop ${JSON.stringify(c.stop)} stream ${stream}`);
      assert.deepEqual(got.finish, ['stop']);
      assert.equal(got.usage.completion_tokens, c.nTokens);
    }
  });

  test('seed: same seed same text at temperature 1, different seeds differ', async () => {
    const ask = async (seed) => (await client.chat.completions.create({
      model: modelId, messages: story, max_tokens: 24, temperature: 1, seed,
    })).choices[0].message.content;
    const a = await ask(1234);
    const b = await ask(1234);
    const c = await ask(4321);
    assert.equal(a, b);
    assert.notEqual(a, c);
    // Streaming does not change what the seed gives.
    const chunks = await collect(await client.chat.completions.create({
      model: modelId, messages: story, max_tokens: 24, temperature: 1, seed: 1234, stream: true,
    }));
    assert.equal(assemble(chunks).get(0).text, a);
  });

  test('max_tokens and max_completion_tokens end with finish_reason length', async () => {
    for (const lim of [{ max_tokens: 3 }, { max_completion_tokens: 5 }]) {
      const r = await client.chat.completions.create({ model: modelId, messages: story, ...lim, ...greedy });
      assert.equal(r.choices[0].finish_reason, 'length');
      assert.equal(r.usage.completion_tokens, Object.values(lim)[0]);
    }
  });

  test('tools: a request with tools is accepted and finishes properly', async () => {
    const tools = [{
      type: 'function',
      function: {
        name: 'get_weather',
        description: 'Weather of a city',
        parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
      },
    }];
    const messages = [{ role: 'user', content: 'What is the weather in Paris?' }];
    for (const tool_choice of [undefined, 'auto', 'none']) {
      const r = await client.chat.completions.create({ model: modelId, messages, tools, tool_choice, max_tokens: 16, ...greedy });
      const c = r.choices[0];
      assert.ok(['stop', 'length', 'tool_calls'].includes(c.finish_reason), c.finish_reason);
      if (c.finish_reason === 'tool_calls') {
        for (const call of c.message.tool_calls) {
          assert.equal(call.type, 'function');
          assert.equal(call.function.name, 'get_weather');
          JSON.parse(call.function.arguments);
        }
      } else {
        assert.equal(typeof c.message.content, 'string');
      }
      const chunks = await collect(await client.chat.completions.create({
        model: modelId, messages, tools, tool_choice, max_tokens: 16, ...greedy, stream: true,
      }));
      const s = assemble(chunks).get(0);
      assert.deepEqual(s.finish, [c.finish_reason]);
      if (c.finish_reason !== 'tool_calls') assert.equal(s.text, c.message.content);
    }
    // A conversation that carries a tool call and its result renders and answers.
    const r = await client.chat.completions.create({
      model: modelId, tools, max_tokens: 8, ...greedy,
      messages: [
        ...messages,
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: '{"temp": 21}' },
      ],
    });
    assert.ok(['stop', 'length', 'tool_calls'].includes(r.choices[0].finish_reason));
  });

  // Grammar-constrained decoding: the output follows the schema whatever is sampled.
  const schema = {
    type: 'object',
    properties: { name: { type: 'string' }, age: { type: 'integer' } },
    required: ['name', 'age'],
    additionalProperties: false,
  };
  test('response_format json_schema: output parses and validates', async () => {
    for (const stream of [false, true]) {
      const req = {
        model: modelId, messages: [{ role: 'user', content: 'Give me a person as JSON.' }], max_tokens: 200, temperature: 1, seed: 3,
        response_format: { type: 'json_schema', json_schema: { name: 'person', schema, strict: true } },
      };
      let text;
      let finish;
      if (stream) {
        const s = assemble(await collect(await client.chat.completions.create({ ...req, stream: true }))).get(0);
        text = s.text;
        finish = s.finish[0];
      } else {
        const r = await client.chat.completions.create(req);
        text = r.choices[0].message.content;
        finish = r.choices[0].finish_reason;
      }
      assert.equal(finish, 'stop');
      const v = JSON.parse(text);
      assert.equal(typeof v, 'object');
      assert.deepEqual(Object.keys(v).sort(), ['age', 'name']);
      assert.equal(typeof v.name, 'string');
      assert.ok(Number.isInteger(v.age));
    }
  });
  test('response_format: an unsupported schema keyword is a 400 naming the schema', async () => {
    await assert.rejects(client.chat.completions.create({
      model: modelId, messages: [{ role: 'user', content: 'x' }], max_tokens: 4,
      response_format: { type: 'json_schema', json_schema: { name: 'n', schema: { not: {} } } },
    }), (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal(e.param, 'response_format.json_schema.schema');
      assert.match(e.message, /'not'/);
      return true;
    });
  });
  test('response_format json_object: output is a JSON object', async () => {
    // A story model never closes a free-form object by itself within a few hundred
    // tokens: push '}' (id 128) and '"' (436, 313 ' "') with logit_bias, and let the
    // grammar decide where they are legal. The result must still be a JSON object.
    const r = await client.chat.completions.create({
      model: modelId, messages: [{ role: 'user', content: 'Answer in JSON.' }], max_tokens: 200, temperature: 1, seed: 6,
      logit_bias: { 128: 30, 436: 10, 313: 10 },
      response_format: { type: 'json_object' },
    });
    assert.equal(r.choices[0].finish_reason, 'stop');
    const v = JSON.parse(r.choices[0].message.content);
    assert.ok(v && typeof v === 'object' && !Array.isArray(v));
  });

  test('errors: the SDK raises the right class with param and code', async () => {
    const bad = async (req, cls, check) => {
      await assert.rejects(client.chat.completions.create({ model: modelId, messages: story, max_tokens: 4, ...req }), (e) => {
        assert.ok(e instanceof cls, `expected ${cls.name}, got ${e.constructor.name}: ${e.message}`);
        assert.equal(e.type, 'invalid_request_error');
        check(e);
        return true;
      });
    };
    await bad({ temperature: 5 }, OpenAI.BadRequestError, (e) => {
      assert.equal(e.status, 400);
      assert.equal(e.param, 'temperature');
    });
    await bad({ messages: undefined }, OpenAI.BadRequestError, (e) => assert.equal(e.param, 'messages'));
    await bad({ messages: [] }, OpenAI.BadRequestError, (e) => assert.equal(e.param, 'messages'));
    await bad({ messages: [{ role: 'wizard', content: 'x' }] }, OpenAI.BadRequestError, (e) => assert.match(e.param, /^messages\[0\]/));
    await bad({ n: 0 }, OpenAI.BadRequestError, (e) => assert.equal(e.param, 'n'));
    await bad({ top_logprobs: 3 }, OpenAI.BadRequestError, (e) => assert.equal(e.param, 'top_logprobs'));
    await bad({ stop: ['a', 'b', 'c', 'd', 'e'] }, OpenAI.BadRequestError, (e) => assert.equal(e.param, 'stop'));
    await bad({ max_tokens: 'ten' }, OpenAI.BadRequestError, (e) => assert.equal(e.param, 'max_tokens'));
    await bad({ model: 'gpt-4o' }, OpenAI.NotFoundError, (e) => {
      assert.equal(e.status, 404);
      assert.equal(e.code, 'model_not_found');
    });
    // Longer than the context (2048 tokens): the prompt itself, and prompt + max_tokens.
    const long = [{ role: 'user', content: 'the cat sat on the mat. '.repeat(400) }];
    const nPrompt = tokenize(chatml(long)).length;
    assert.ok(nPrompt > 2048);
    await bad({ messages: long }, OpenAI.BadRequestError, (e) => {
      assert.equal(e.code, 'context_length_exceeded');
      assert.equal(e.param, 'messages');
      assert.match(e.message, /2048/);
      assert.match(e.message, new RegExp(String(nPrompt + 4)));
    });
    await bad({ max_tokens: 5000 }, OpenAI.BadRequestError, (e) => {
      assert.equal(e.code, 'context_length_exceeded');
      assert.match(e.message, /2048/);
    });
    await assert.rejects(client.completions.create({ model: modelId, prompt: 'x', logprobs: 9 }), OpenAI.BadRequestError);
    // The server still answers.
    const ok = await client.chat.completions.create({ model: modelId, messages: story, max_tokens: 2 });
    assert.equal(ok.usage.completion_tokens, 2);
  });
});

describe('API key', { skip: skipReason() ?? false }, () => {
  let server;
  before(async () => { server = await LlmServer.start({ args: ['--api-key', 'sekret-key'] }); });
  after(async () => { await server.stop(); });

  test('a wrong or missing key is 401; the right key works; /health needs none', async () => {
    const wrong = new OpenAI({ baseURL: server.baseURL, apiKey: 'wrong-key', maxRetries: 0 });
    await assert.rejects(wrong.chat.completions.create({ model: modelId, messages: story, max_tokens: 2 }), (e) => {
      assert.ok(e instanceof OpenAI.AuthenticationError, e.constructor.name);
      assert.equal(e.status, 401);
      assert.equal(e.code, 'invalid_api_key');
      return true;
    });
    await assert.rejects(wrong.models.list(), OpenAI.AuthenticationError);
    const none = await fetch(`${server.baseURL}/models`);
    assert.equal(none.status, 401);
    assert.equal((await none.json()).error.type, 'invalid_request_error');
    assert.equal((await fetch(`${server.url}/metrics`)).status, 401);
    assert.equal(await server.health(), 200);

    const right = new OpenAI({ baseURL: server.baseURL, apiKey: 'sekret-key', maxRetries: 0 });
    const r = await right.chat.completions.create({ model: modelId, messages: story, max_tokens: 2 });
    assert.equal(r.usage.completion_tokens, 2);
  });
});
