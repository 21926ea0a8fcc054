// Whatever bytes a client sends, `llm serve` answers with the right status and OpenAI's
// error envelope, and keeps serving: malformed bodies, wrong media types, oversized and
// badly framed bodies, unknown routes and methods, garbage and truncated request lines.
// Sent through raw sockets (node:net) or node:http, so that nothing is tidied up on the way.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import { LlmServer, skipReason, modelId } from './lib/server.js';

// Sends `data` on a fresh connection and reads one response: {status, headers, body, json}
// (status 0 when the server closed without answering).
function rawHttp(port, data, { timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let settled = false;
    const finish = (err) => {
      if (settled) return;
      settled = true;
      sock.destroy();
      if (err) return reject(err);
      resolve(parseResponse(buf));
    };
    const complete = () => {
      const r = parseResponse(buf);
      return r.status && r.complete;
    };
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (complete()) finish();
    });
    sock.on('end', () => finish());
    sock.on('error', (e) => (buf.length ? finish() : finish(e)));
    sock.setTimeout(timeoutMs, () => finish(new Error(`no complete response in ${timeoutMs} ms; got ${JSON.stringify(buf.toString('latin1').slice(0, 300))}`)));
    sock.write(data);
  });
}

function parseResponse(buf) {
  const text = buf.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return { status: 0, complete: false, raw: text };
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
  const headers = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  const len = Number(headers['content-length'] ?? 0);
  const bodyBytes = buf.subarray(Buffer.byteLength(text.slice(0, end + 4), 'latin1'));
  const body = bodyBytes.subarray(0, len).toString('utf8');
  let json = null;
  try { json = JSON.parse(body); } catch { /* not JSON */ }
  return { status, headers, body, json, complete: bodyBytes.length >= len, raw: text };
}

// Sends all requests on one connection, one after the other (each after the previous
// answer), and returns the statuses; fails on any byte that is not part of an answer.
async function pipelined(port, reqs, { timeoutMs = 10000 } = {}) {
  const sock = net.connect(port, '127.0.0.1');
  await new Promise((r, j) => { sock.once('connect', r); sock.once('error', j); });
  let buf = Buffer.alloc(0);
  let wake = () => {};
  sock.on('data', (d) => { buf = Buffer.concat([buf, d]); wake(); });
  sock.on('error', () => wake());
  const statuses = [];
  try {
    for (const r of reqs) {
      sock.write(r);
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const p = parseResponse(buf);
        if (p.status && p.complete) {
          statuses.push(p.status);
          const headLen = buf.indexOf('\r\n\r\n') + 4;
          buf = buf.subarray(headLen + Number(p.headers['content-length'] ?? 0));
          break;
        }
        if (Date.now() > deadline) throw new Error(`no answer to request ${statuses.length} (after ${statuses}); have ${JSON.stringify(buf.toString('latin1').slice(0, 200))}`);
        await new Promise((r) => { wake = r; setTimeout(r, 50); });
      }
    }
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(buf.length, 0, `unexpected bytes after the answers: ${JSON.stringify(buf.toString('latin1').slice(0, 200))}`);
  } finally {
    sock.destroy();
  }
  return statuses;
}

// OpenAI's error envelope: {"error": {"message", "type", "param", "code"}}.
function assertEnvelope(r, status, { code, type = 'invalid_request_error' } = {}) {
  assert.equal(r.status, status, `status ${r.status}, body ${r.body ?? r.raw}`);
  assert.ok(r.json && typeof r.json.error === 'object', `no error envelope: ${r.body}`);
  assert.deepEqual(Object.keys(r.json.error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(typeof r.json.error.message, 'string');
  assert.ok(r.json.error.message.length > 0);
  assert.equal(r.json.error.type, type);
  if (code !== undefined) assert.equal(r.json.error.code, code);
  const ct = typeof r.headers.get === 'function' ? r.headers.get('content-type') : r.headers['content-type'];
  assert.match(ct, /^application\/json/);
}

const goodBody = JSON.stringify({ model: modelId, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 });

function request(method, path, { body = '', headers = {} } = {}) {
  const b = Buffer.from(body);
  let h = `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`;
  for (const [k, v] of Object.entries(headers)) if (k !== 'noLength') h += `${k}: ${v}\r\n`;
  if ((body || ['POST', 'PUT', 'PATCH'].includes(method)) && !('Content-Length' in headers) && !('Transfer-Encoding' in headers) && !headers.noLength) {
    h += `Content-Length: ${b.length}\r\n`;
  }
  return Buffer.concat([Buffer.from(h + '\r\n'), b]);
}

describe('raw HTTP robustness', { skip: skipReason() ?? false }, () => {
  let server;
  let rejectedBefore;
  before(async () => {
    server = await LlmServer.start();
    rejectedBefore = (await server.metrics()).get('llm_requests_rejected_total{class="4xx"}');
  });
  after(async () => {
    const { code } = await server.stop();
    assert.equal(code, 0, `llm serve exited with ${code}:\n${server.stderr}`);
  });

  // After each case the server still answers /health and a real request.
  async function stillServing() {
    assert.equal(await server.health(), 200);
  }

  test('malformed JSON bodies: 400', async () => {
    for (const body of ['{', '{"model": }', 'not json', '{"model":"x",}', '\u0000\u0001', '']) {
      const r = await rawHttp(server.port, request('POST', '/v1/chat/completions', { body, headers: { 'Content-Type': 'application/json' } }));
      assertEnvelope(r, 400);
      assert.match(r.json.error.message, /JSON/);
      await stillServing();
    }
  });

  test('a POST without Content-Length or chunked encoding has no body: 400 at once', async () => {
    const t0 = Date.now();
    const r = await rawHttp(server.port, request('POST', '/v1/chat/completions', { headers: { 'Content-Type': 'application/json', noLength: true } }));
    assertEnvelope(r, 400);
    assert.ok(Date.now() - t0 < 5000);
    const u = await rawHttp(server.port, request('POST', '/v1/nowhere', { headers: { noLength: true } }));
    assertEnvelope(u, 404);
    await stillServing();
  });

  test('JSON that is not an object: 400', async () => {
    for (const body of ['[1,2]', '"text"', '42', 'null', 'true']) {
      for (const route of ['/v1/chat/completions', '/v1/completions']) {
        const r = await rawHttp(server.port, request('POST', route, { body, headers: { 'Content-Type': 'application/json' } }));
        assertEnvelope(r, 400);
        assert.match(r.json.error.message, /object/);
      }
    }
    await stillServing();
  });

  test('wrong field types are 400 with the parameter named', async () => {
    const cases = [
      [{ model: modelId, messages: 'hi' }, 'messages'],
      [{ model: 42, messages: [{ role: 'user', content: 'x' }] }, 'model'],
      [{ model: modelId, messages: [{ role: 'user', content: 'x' }], stream: 'yes' }, 'stream'],
      [{ model: modelId, messages: [{ role: 'user', content: 'x' }], temperature: '0.5' }, 'temperature'],
      [{ model: modelId, messages: [{ role: 'user', content: 'x' }], logit_bias: { abc: 1 } }, 'logit_bias'],
      [{ model: modelId, messages: [{ role: 'user', content: 'x' }], stream_options: { include_usage: true } }, 'stream_options'],
    ];
    for (const [body, param] of cases) {
      const r = await server.post('/v1/chat/completions', body);
      assertEnvelope(r, 400);
      assert.equal(r.json.error.param, param, JSON.stringify(body));
    }
    const r = await server.post('/v1/completions', { model: modelId, prompt: [1, 'a'] });
    assertEnvelope(r, 400);
    assert.equal(r.json.error.param, 'prompt');
    await stillServing();
  });

  test('Content-Type: JSON types accepted, others 400', async () => {
    for (const ct of ['application/json', 'application/json; charset=utf-8', 'Application/JSON', null]) {
      const headers = ct ? { 'Content-Type': ct } : {};
      const r = await rawHttp(server.port, request('POST', '/v1/chat/completions', { body: goodBody, headers }));
      assert.equal(r.status, 200, `${ct}: ${r.body}`);
      assert.equal(r.json.object, 'chat.completion');
    }
    for (const ct of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/jsonx']) {
      const r = await rawHttp(server.port, request('POST', '/v1/chat/completions', { body: goodBody, headers: { 'Content-Type': ct } }));
      assertEnvelope(r, 400);
      assert.match(r.json.error.message, /Content-Type/);
    }
    await stillServing();
  });

  test('body over the limit (16 MiB): 413, by Content-Length and chunked', async () => {
    const big = Buffer.alloc(17 << 20, 0x61);
    // With Content-Length.
    const r1 = await new Promise((resolve, reject) => {
      const req = http.request({ port: server.port, host: '127.0.0.1', method: 'POST', path: '/v1/chat/completions',
        headers: { 'Content-Type': 'application/json', 'Content-Length': big.length } }, (res) => {
        let body = '';
        res.on('data', (d) => { body += d; });
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body, json: JSON.parse(body) }));
      });
      req.on('error', reject);
      req.end(big);
    });
    assertEnvelope(r1, 413, { code: 'request_too_large' });
    await stillServing();
    // Chunked: no length up front, the server stops reading at the limit.
    const r2 = await new Promise((resolve, reject) => {
      const req = http.request({ port: server.port, host: '127.0.0.1', method: 'POST', path: '/v1/chat/completions',
        headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' } }, (res) => {
        let body = '';
        res.on('data', (d) => { body += d; });
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body, json: JSON.parse(body) }));
      });
      // The server may close before it has read everything: that is fine once it answered.
      req.on('error', (e) => { if (!['EPIPE', 'ECONNRESET'].includes(e.code)) reject(e); });
      let sent = 0;
      const piece = Buffer.alloc(1 << 20, 0x61);
      const pump = () => {
        while (sent < big.length) {
          sent += piece.length;
          if (!req.write(piece)) return req.once('drain', pump);
        }
        req.end();
      };
      pump();
    });
    assertEnvelope(r2, 413, { code: 'request_too_large' });
    await stillServing();
    // Just under the limit is read (and then fails as JSON, not as size).
    const r3 = await rawHttp(server.port, request('POST', '/v1/chat/completions', { body: 'x'.repeat(1 << 20), headers: { 'Content-Type': 'application/json' } }));
    assertEnvelope(r3, 400);
    await stillServing();
  });

  test('bad framing: invalid Content-Length, chunked encoding errors: 400', async () => {
    for (const cl of ['abc', '-5', '1e3', '99999999999999999999999']) {
      const r = await rawHttp(server.port, Buffer.from(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${cl}\r\n\r\n{}`));
      assertEnvelope(r, 400);
      await stillServing();
    }
    const both = await rawHttp(server.port, Buffer.from('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'));
    assertEnvelope(both, 400);
    const badChunk = await rawHttp(server.port, Buffer.from('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n'));
    assertEnvelope(badChunk, 400);
    assert.equal(badChunk.headers.connection, 'close');
    // A well-formed chunked body is fine.
    const half = Math.floor(goodBody.length / 2);
    const chunked = `${half.toString(16)}\r\n${goodBody.slice(0, half)}\r\n${(goodBody.length - half).toString(16)}\r\n${goodBody.slice(half)}\r\n0\r\n\r\n`;
    const ok = await rawHttp(server.port, request('POST', '/v1/chat/completions', { body: chunked, headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' } }));
    assert.equal(ok.status, 200, ok.body);
    assert.equal(ok.json.usage.completion_tokens, 2);
    await stillServing();
  });

  test('unknown routes: 404 envelope', async () => {
    for (const [method, path] of [['GET', '/v1/nope'], ['POST', '/v1/chat/complete'], ['GET', '/v2/models'], ['GET', '/favicon.ico'], ['POST', '/']]) {
      const r = await rawHttp(server.port, request(method, path, method === 'POST' ? { body: '{}', headers: { 'Content-Type': 'application/json' } } : {}));
      if (method === 'POST' && path === '/') {
        assertEnvelope(r, 405);
        continue;
      }
      assertEnvelope(r, 404, { code: 'unknown_url' });
      assert.ok(r.json.error.message.includes(path));
    }
    await stillServing();
  });

  test('wrong method on a known route: 405 with Allow', async () => {
    for (const [method, path, allow] of [
      ['GET', '/v1/chat/completions', /POST/],
      ['DELETE', '/v1/completions', /POST/],
      ['PUT', '/v1/chat/completions', /POST/],
      ['POST', '/v1/models', /GET/],
      ['DELETE', '/health', /GET/],
      ['PATCH', '/metrics', /GET/],
    ]) {
      const r = await rawHttp(server.port, request(method, path, ['PUT', 'PATCH', 'POST'].includes(method) ? { body: '{}' } : {}));
      assertEnvelope(r, 405);
      assert.match(r.headers.allow, allow, `${method} ${path}`);
      await stillServing();
    }
    // CORS preflight.
    const o = await rawHttp(server.port, request('OPTIONS', '/v1/chat/completions'));
    assert.equal(o.status, 204);
    assert.equal(o.headers['access-control-allow-origin'], '*');
  });

  test('garbage and malformed request lines: 400 envelope, server unharmed', async () => {
    const cases = [
      'GARBAGE\r\n\r\n',
      'GET\r\n\r\n',
      'GET /health HTTP/9.9\r\nHost: x\r\n\r\n',
      'FOO /health HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /health HTTP/1.1\r\nHost: x\r\nX-Long: ' + 'a'.repeat(20000) + '\r\n\r\n',
      Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 13, 10, 13, 10]),  // a TLS hello
      Buffer.from([0, 1, 2, 255, 254, 13, 10, 13, 10]),
    ];
    for (const c of cases) {
      const r = await rawHttp(server.port, c);
      assertEnvelope(r, 400);
      await stillServing();
    }
    const longUri = await rawHttp(server.port, `GET /${'a'.repeat(20000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.equal(longUri.status, 414);
    assert.ok(longUri.json?.error, 'no error envelope');
    await stillServing();
  });

  test('truncated requests and dropped connections leave the server serving', async () => {
    const partials = [
      'GET /health HTTP/1.1\r\nHost: x\r\n',  // headers never end
      'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model":',  // body cut
      'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{"mod',  // chunk cut
      'GE',
      '',
    ];
    // Many at once, then the client goes away.
    const socks = [];
    for (let i = 0; i < 20; ++i) {
      for (const p of partials) {
        const s = net.connect(server.port, '127.0.0.1');
        s.on('error', () => {});
        s.write(p);
        socks.push(s);
      }
    }
    await new Promise((r) => setTimeout(r, 200));
    // While they hang, the server answers others.
    await stillServing();
    const ok = await server.post('/v1/chat/completions', goodBody);
    assert.equal(ok.status, 200);
    for (const s of socks) s.destroy();
    await new Promise((r) => setTimeout(r, 100));
    await stillServing();
  });

  test('keep-alive: every request on one connection gets its own answer, errors included', async () => {
    // Pipelined on one socket: a good request, bodies that fail in different ways, a
    // health check. Each answer must come back in order and nothing extra.
    const big = JSON.stringify({ model: modelId, prompt: 'word '.repeat(3000), max_tokens: 1, temperature: 'hot' });
    const reqs = [
      request('POST', '/v1/chat/completions', { body: goodBody, headers: { 'Content-Type': 'application/json' } }),
      request('POST', '/v1/completions', { body: big, headers: { 'Content-Type': 'application/json' } }),
      request('POST', '/v1/completions', { body: big, headers: { 'Content-Type': 'text/plain' } }),
      request('POST', '/v1/nowhere', { body: big, headers: { 'Content-Type': 'application/json' } }),
      request('GET', '/health'),
    ];
    const statuses = await pipelined(server.port, reqs);
    assert.deepEqual(statuses, [200, 400, 400, 404, 200]);
  });

  test('rejections are counted in /metrics', async () => {
    const after = (await server.metrics()).get('llm_requests_rejected_total{class="4xx"}');
    assert.ok(after - rejectedBefore >= 30, `only ${after - rejectedBefore} rejections counted`);
  });
});

describe('raw HTTP with --api-key', { skip: skipReason() ?? false }, () => {
  let server;
  before(async () => { server = await LlmServer.start({ args: ['--api-key', 'k-123'] }); });
  after(async () => { await server.stop(); });

  test('a refused request with a large body does not desynchronise the connection', async () => {
    const big = JSON.stringify({ model: modelId, prompt: 'word '.repeat(3000), max_tokens: 1 });
    const auth = { 'Content-Type': 'application/json', Authorization: 'Bearer k-123' };
    // (httplib closes a connection after 5 requests: two rounds.)
    const small = JSON.stringify({ model: modelId, prompt: 'word', max_tokens: 1 });
    assert.deepEqual(await pipelined(server.port, [
      request('POST', '/v1/completions', { body: big, headers: { 'Content-Type': 'application/json', Authorization: 'Bearer wrong' } }),
      request('GET', '/health'),
      request('POST', '/v1/completions', { body: big, headers: { 'Content-Type': 'application/json' } }),
      request('GET', '/v1/models', { headers: { Authorization: 'Bearer k-123' } }),
      request('POST', '/v1/completions', { body: small, headers: auth }),
    ]), [401, 200, 401, 200, 200]);
    assert.deepEqual(await pipelined(server.port, [
      request('POST', '/v1/chat/completions', { body: big, headers: { 'Content-Type': 'text/plain' } }),
      request('GET', '/metrics'),
      request('POST', '/v1/nowhere', { body: big, headers: { 'Content-Type': 'application/json' } }),
      request('GET', '/metrics', { headers: { Authorization: 'Bearer k-123' } }),
    ]), [401, 401, 404, 200]);
  });
});
