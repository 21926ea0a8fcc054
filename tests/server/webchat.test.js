// The web chat at / in headless Chromium (Debian's chromium driven by playwright-core):
// it loads with no request leaving the machine, streams an answer, stops one, starts
// a new chat, sends the system prompt; a screenshot is kept as a test artifact.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { LlmServer, skipReason, artifactsDir, sleep, waitFor } from './lib/server.js';

const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const skip = skipReason() ?? (existsSync(chromiumPath) ? false : `${chromiumPath} not found (apt-get install chromium)`);

describe('web chat in headless Chromium', { skip }, () => {
  let server;
  let browser;
  let page;
  const external = [];      // requests that tried to leave the machine
  const pageErrors = [];
  const chatBodies = [];    // bodies the page POSTed to /v1/chat/completions
  let extra = {};           // fields the test adds to the page's next chat request

  before(async () => {
    server = await LlmServer.start({ args: ['--kv-tokens', '65536'] });  // room for the background streams
    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
    const context = await browser.newContext({ viewport: { width: 960, height: 720 }, colorScheme: 'light' });
    // Offline: anything not on loopback is recorded and fails.
    await context.route('**/*', async (route) => {
      const req = route.request();
      const url = new URL(req.url());
      if (!['127.0.0.1', 'localhost'].includes(url.hostname) || !['http:', 'https:'].includes(url.protocol)) {
        external.push(req.url());
        return route.abort();
      }
      if (url.pathname === '/v1/chat/completions' && req.method() === 'POST') {
        const body = JSON.parse(req.postData());
        chatBodies.push(body);
        // The page asks for an open-ended answer; the tests bound or lengthen it.
        return route.continue({ postData: JSON.stringify({ ...body, ...extra }) });
      }
      return route.continue();
    });
    page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
  });

  after(async () => {
    await browser?.close();
    const { code } = await server.stop();
    assert.equal(code, 0, server.stderr);
  });

  const messages = () => page.locator('#log .msg');
  const lastAnswer = () => page.locator('#log .msg.assistant').last();

  test('the page loads offline and knows the model', async () => {
    const res = await page.goto(server.url + '/', { waitUntil: 'networkidle' });
    assert.equal(res.status(), 200);
    assert.match(res.headers()['content-type'], /text\/html/);
    assert.equal(await page.title(), 'llm');
    await page.waitForFunction(() => document.getElementById('model').textContent.length > 0);
    assert.equal(await page.textContent('#model'), 'stories260K.gguf');
    assert.ok(await page.isEnabled('#send'));
    assert.ok(await page.isDisabled('#stop'));
    assert.deepEqual(external, []);
  });

  test('markdown rendering escapes HTML', async () => {
    const html = await page.evaluate(() => markdown('# Title\n\n**bold** and `code`\n\n- a\n- b\n\n<img src=x onerror=alert(1)>'));
    assert.match(html, /<h1>Title<\/h1>/);
    assert.match(html, /<strong>bold<\/strong>/);
    assert.match(html, /<code>code<\/code>/);
    assert.match(html, /<ul><li>a<\/li><li>b<\/li><\/ul>/);
    assert.ok(!html.includes('<img'), html);
  });

  test('a message is sent and the answer streams in', async () => {
    extra = { max_tokens: 64, temperature: 0 };
    await page.fill('#input', 'Tell me a story about a cat.');
    await page.press('#input', 'Enter');  // Enter sends
    // The user's message, then the assistant's growing answer.
    await page.locator('#log .msg.user').first().waitFor();
    assert.equal(await page.locator('#log .msg.user').first().textContent(), 'Tell me a story about a cat.');
    // Streaming: the answer is seen partly written before it is complete.
    const lengths = [];
    await waitFor(async () => {
      lengths.push((await lastAnswer().innerText()).length);
      return page.locator('#log .msg.assistant .stats').count();
    }, { timeoutMs: 30000, everyMs: 5 });
    const stats = await page.locator('#log .msg.assistant .stats').last().textContent();
    assert.match(stats, /^64 tokens · [\d.]+ tok\/s · first token \d+ ms$/);
    const answer = (await lastAnswer().innerText()).replace(stats, '').trim();
    assert.ok(answer.length > 20, answer);
    // Same text as the API gives for the same request.
    const { stream_options: _, ...whole } = { ...chatBodies.at(-1), ...extra, stream: false };
    const api = await server.post('/v1/chat/completions', whole);
    assert.equal(answer.replace(/\s+/g, ' '), api.json.choices[0].message.content.trim().replace(/\s+/g, ' '));
    assert.equal(chatBodies.at(-1).stream, true);
    assert.deepEqual(chatBodies.at(-1).messages, [{ role: 'user', content: 'Tell me a story about a cat.' }]);
    assert.ok(await page.isEnabled('#send'));
    assert.ok(await page.isDisabled('#stop'));
    assert.equal(await page.inputValue('#input'), '');
    await page.screenshot({ path: path.join(artifactsDir(), 'webchat.png') });
  });

  test('the conversation goes on: history is sent back', async () => {
    extra = { max_tokens: 16, temperature: 0 };
    await page.fill('#input', 'And then?');
    await page.click('#send');
    await page.locator('#log .msg.assistant .stats').nth(1).waitFor({ timeout: 30000 });
    const msgs = chatBodies.at(-1).messages;
    assert.deepEqual(msgs.map((m) => m.role), ['user', 'assistant', 'user']);
    assert.equal(msgs[2].content, 'And then?');
    assert.equal(await messages().count(), 4);
  });

  test('the stop button stops a long answer, and the server cancels it', async () => {
    // Alone, the tiny model writes even 1700 tokens in about a second: too quick to click
    // stop reliably. Background streams share the engine's steps and slow this one down.
    const background = Array.from({ length: 24 }, (_, i) => {
      const ac = new AbortController();
      const done = fetch(`${server.baseURL}/chat/completions`, {
        method: 'POST', signal: ac.signal, headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ model: 'stories260K.gguf', messages: [{ role: 'user', content: `Story ${i}` }], max_tokens: 1500, ignore_eos: true, stream: true }),
      }).then(async (r) => { for await (const _ of r.body) { /* consume */ } }).catch(() => {});
      return { ac, done };
    });
    try {
      assert.ok(await waitFor(async () => (await server.metrics()).get('llm_requests_running') === 24, { timeoutMs: 10000 }),
        'background streams did not start');
      extra = { max_tokens: 1700, ignore_eos: true, temperature: 1, seed: 4 };  // within the 2048 context
      await page.fill('#input', 'Tell me a very long story.');
      await page.click('#send');
      const answer = lastAnswer();
      await waitFor(async () => (await answer.innerText()).length > 10, { timeoutMs: 30000, everyMs: 5 });
      assert.ok(!(await answer.getAttribute('class')).includes('error'), await answer.innerText());
      assert.equal((await server.metrics()).get('llm_requests_running'), 25);
      await page.click('#stop');
      await page.locator('#log .msg.assistant .stats').nth(2).waitFor({ timeout: 10000 });
      assert.match(await answer.locator('.stats').textContent(), /stopped/);
      assert.ok(await page.isDisabled('#stop'));
      assert.ok(await page.isEnabled('#send'));
      // The server cancelled the page's request while the others go on.
      assert.ok(await waitFor(async () => (await server.metrics()).get('llm_requests_running') === 24),
        'the stopped request is still running on the server');
      const len = (await answer.innerText()).length;
      await sleep(300);
      assert.equal((await answer.innerText()).length, len, 'the answer kept growing after stop');
      await page.screenshot({ path: path.join(artifactsDir(), 'webchat-stopped.png') });
    } finally {
      for (const b of background) b.ac.abort();
      await Promise.all(background.map((b) => b.done));
    }
    const freed = await waitFor(async () => {
      const m = await server.metrics();
      return m.get('llm_requests_running') === 0 && m.get('llm_kv_cache_blocks{state="used"}') === 0;
    });
    assert.ok(freed, 'requests still hold the engine after every client went away');
  });

  test('new chat clears the log and the history; the system prompt is sent', async () => {
    await page.click('#new');
    assert.equal(await messages().count(), 0);
    extra = { max_tokens: 8, temperature: 0 };
    await page.click('summary');
    await page.fill('#system', 'You are a pirate.');
    await page.fill('#input', 'Hello');
    await page.click('#send');
    await page.locator('#log .msg.assistant .stats').first().waitFor({ timeout: 30000 });
    assert.deepEqual(chatBodies.at(-1).messages, [
      { role: 'system', content: 'You are a pirate.' },
      { role: 'user', content: 'Hello' },
    ]);
    assert.equal(await messages().count(), 2);
  });

  test('an error from the server is shown in the chat', async () => {
    extra = { temperature: 7 };
    await page.fill('#input', 'Hi');
    await page.click('#send');
    const err = page.locator('#log .msg.assistant.error');
    await err.waitFor({ timeout: 10000 });
    assert.match(await err.textContent(), /^Error: .*temperature/);
    assert.ok(await page.isEnabled('#send'));
  });

  test('nothing left the machine and the page logged no errors', () => {
    assert.deepEqual(external, []);
    assert.deepEqual(pageErrors.filter((e) => !/status of 400/.test(e)), []);
  });
});
