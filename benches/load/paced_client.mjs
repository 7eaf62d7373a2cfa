#!/usr/bin/env node
// A CIBA client that keeps the rules: starts N backchannel requests, then polls each of them
// exactly once per interval (a little after it), for a bounded time, over keep-alive
// connections, and prints the latency of every poll.
//
//   node paced_client.mjs BASE_URL CLIENT_ID SECRET IDS INTERVAL_MS SECONDS [SOURCE_IP]
//
// SOURCE_IP (e.g. 127.0.0.2) makes it another address than a flooding client on 127.0.0.1.
//
// Prints one line: RESULT <polls> <p50 µs> <p99 µs> <max µs> <errors> <status:count,...>
// Sends only to BASE_URL (the tests' loopback gateway) and stops by itself.

import * as http from 'node:http';

const [base, clientId, secret, idsArg, intervalArg, secondsArg, sourceIp] = process.argv.slice(2);
if (!secondsArg) {
  process.stderr.write('usage: node paced_client.mjs BASE_URL CLIENT_ID SECRET IDS INTERVAL_MS SECONDS\n');
  process.exit(2);
}
const ids = Number(idsArg);
const interval = Number(intervalArg);
const until = Date.now() + Number(secondsArg) * 1000;
const agent = new http.Agent({ keepAlive: true, maxSockets: ids });

function post(path, form) {
  const body = new URLSearchParams(form).toString();
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    const req = http.request(`${base}${path}`, {
      method: 'POST',
      agent,
      localAddress: sourceIp,
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({
        status: res.statusCode,
        body: Buffer.concat(chunks).toString('utf8'),
        micros: Number((process.hrtime.bigint() - started) / 1000n),
      }));
    });
    req.on('error', () => resolve({ status: 0, body: '', micros: 0 }));
    req.end(body);
  });
}

const creds = { client_id: clientId, client_secret: secret };
const started = await Promise.all(Array.from({ length: ids }, (_, i) => post('/backchannel', {
  ...creds, scope: 'openid', login_hint: `paced-user-${i}`,
})));
const authReqIds = started.map((r) => {
  if (r.status !== 200) {
    process.stderr.write(`paced_client: backchannel answered ${r.status}: ${r.body}\n`);
    process.exit(1);
  }
  return JSON.parse(r.body).auth_req_id;
});

const latencies = [];
const statuses = new Map();
let errors = 0;
const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

async function pollLoop(id, offset) {
  await sleep(offset);
  for (;;) {
    // A little after the interval, as a correct client's timer fires.
    await sleep(interval + 50);
    if (Date.now() >= until) return;
    const r = await post('/token', { ...creds, grant_type: 'urn:openid:params:grant-type:ciba', auth_req_id: id });
    if (r.status === 0) errors += 1;
    else latencies.push(r.micros);
    const key = r.status === 400 ? `400-${(JSON.parse(r.body).error ?? '')}` : String(r.status);
    statuses.set(key, (statuses.get(key) ?? 0) + 1);
  }
}

// Spread the ids over one interval so the polls arrive evenly.
await Promise.all(authReqIds.map((id, i) => pollLoop(id, Math.floor((interval * i) / ids))));
agent.destroy();

latencies.sort((a, b) => a - b);
const pick = (q) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] : 0);
const shown = [...statuses].map(([k, v]) => `${k}:${v}`).join(',');
process.stdout.write(`RESULT ${latencies.length} ${pick(0.5)} ${pick(0.99)} ${latencies.at(-1) ?? 0} ${errors} ${shown}\n`);
