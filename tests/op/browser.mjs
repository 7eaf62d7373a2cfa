#!/usr/bin/env node
// The end user's browser, scripted, for the PAR bridge tests: opens an authorization URL,
// keeps cookies, follows redirects, and submits node-oidc-provider's development login
// and consent forms (or cancels at the login page), until a page that is not the OP's.
//
//   node tests/op/browser.mjs <url> [--login NAME] [--cancel] [--stop-before-callback]
//
// Prints one JSON line to stdout: {status, url, body, headers, callback} where `url` is the
// last page's and `callback` the first URL outside the OP (the gateway's callback). With
// --stop-before-callback the callback is not fetched (the test replays or forges it).

const args = process.argv.slice(2);
const start = args[0];
if (!start) {
  process.stderr.write('usage: node browser.mjs <url> [--login NAME] [--cancel] [--stop-before-callback]\n');
  process.exit(2);
}
const login = args.includes('--login') ? args[args.indexOf('--login') + 1] : 'alice';
const cancel = args.includes('--cancel');
const stopBefore = args.includes('--stop-before-callback');
const opOrigin = new URL(start).origin;

// One cookie jar per origin; the OP's cookies are scoped by path, but sending each of them
// on every path of its origin is what matters here (the OP looks cookies up by name).
const jar = new Map();
function storeCookies(origin, res) {
  const set = res.headers.getSetCookie ? res.headers.getSetCookie() : [];
  const cookies = jar.get(origin) ?? new Map();
  for (const line of set) {
    const [pair, ...attrs] = line.split(';');
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    const expired = attrs.some((a) => /^\s*expires=/i.test(a) && Date.parse(a.split('=')[1]) < Date.now())
      || attrs.some((a) => /^\s*max-age=0/i.test(a));
    if (expired || value === '') cookies.delete(name);
    else cookies.set(name, value);
  }
  jar.set(origin, cookies);
}
function cookieHeader(origin) {
  const cookies = jar.get(origin);
  if (!cookies || cookies.size === 0) return undefined;
  return [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
}

async function request(url, init = {}) {
  const u = new URL(url);
  const headers = { ...(init.headers ?? {}) };
  const c = cookieHeader(u.origin);
  if (c) headers.cookie = c;
  const res = await fetch(u, { ...init, headers, redirect: 'manual' });
  storeCookies(u.origin, res);
  return res;
}

function decodeHtml(s) {
  return s.replace(/&amp;/g, '&').replace(/&#x2F;/g, '/').replace(/&#47;/g, '/').replace(/&quot;/g, '"');
}

let url = start;
let method = 'GET';
let body;
let callback = null;
for (let step = 0; step < 30; step += 1) {
  const u = new URL(url);
  if (u.origin !== opOrigin && callback === null) {
    callback = url;
    if (stopBefore) {
      process.stdout.write(`${JSON.stringify({ status: 0, url, body: '', headers: {}, callback })}\n`);
      process.exit(0);
    }
  }
  const init = { method };
  if (body !== undefined) {
    init.body = body;
    init.headers = { 'content-type': 'application/x-www-form-urlencoded' };
  }
  const res = await request(url, init);
  method = 'GET';
  body = undefined;
  if (res.status >= 300 && res.status < 400 && res.headers.get('location')) {
    url = new URL(res.headers.get('location'), url).toString();
    continue;
  }
  const text = await res.text();
  if (u.origin === opOrigin && res.status === 200 && /<form/.test(text)) {
    const action = decodeHtml(/<form[^>]*action="([^"]+)"/.exec(text)[1]);
    const prompt = /name="prompt" value="([^"]+)"/.exec(text)?.[1];
    if (cancel) {
      const abort = /href="([^"]*\/abort)"/.exec(text);
      if (!abort) throw new Error('no abort link on the OP page');
      url = new URL(decodeHtml(abort[1]), url).toString();
      continue;
    }
    method = 'POST';
    body = prompt === 'login'
      ? new URLSearchParams({ prompt: 'login', login, password: 'any' }).toString()
      : new URLSearchParams({ prompt: prompt ?? 'consent' }).toString();
    url = new URL(action, url).toString();
    continue;
  }
  const headers = Object.fromEntries(res.headers);
  process.stdout.write(`${JSON.stringify({ status: res.status, url, body: text, headers, callback })}\n`);
  process.exit(0);
}
throw new Error('too many steps');
