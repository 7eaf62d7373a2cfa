#!/usr/bin/env node
// Test OpenID Provider (CIBA, poll mode) for the gateway's integration tests.
//
//   node tests/op/server.mjs [--host IP] [--port N] [--backchannel-path /path] [--token-path /path]
//                            [--interval N] [--ignore-stdin] [--bridge] [--bridge-callback-path /path]
//                            [--mtls FILE] [--fapi] [--tls-cert FILE --tls-key FILE [--tls-ca FILE]]
//
// --fapi: also registers the FAPI-CIBA clients fapi-a and fapi-b (private_key_jwt, keys in
// tests/data/fapi) and turns request objects on.
//
// --tls-cert/--tls-key: HTTPS instead of HTTP (issuer https://...). --tls-ca: clients must
// present a certificate that chains to this CA (mTLS); the common names of the client
// certificates seen are in /admin/stats as tls_client_cns.
//
// --bridge: an OP without CIBA, as the gateway's PAR bridge meets one: CIBA off, PAR on,
// its development login and consent pages on, the clients registered for the
// authorization code flow with the gateway's callback (a loopback http URL, any port:
// they are native clients, RFC 8252 7.3) as redirect_uri.
//
// --mtls FILE turns on oidc-provider's mTLS feature (RFC 8705) behind the gateway: FILE is
// JSON {"header", "ca_pem", "clients": [...]}; the client certificate is read from the
// header the gateway forwards (URL-encoded PEM), tls_client_auth chains are checked against
// ca_pem, each client is registered for CIBA poll with certificate-bound tokens (a
// self_signed_tls_client_auth client's "certificate_pem" becomes its jwks x5c), and the
// discovery document publishes mtls_endpoint_aliases /mtls/token and /mtls/backchannel.
//
// Listens on 127.0.0.1 only (or the loopback address --host names). When ready it prints exactly one line to stdout:
//   READY <port>
// Nothing else is ever written to stdout (all logging goes to stderr).
// Exits when stdin closes (unless --ignore-stdin), and on SIGTERM / SIGINT.
// See README.md for the admin API and the registered clients.

import * as http from 'node:http';
import * as https from 'node:https';
import * as fs from 'node:fs';
import * as crypto from 'node:crypto';

// oidc-provider prints some notices with console.info (i.e. to stdout). Keep
// stdout reserved for the READY line: route every console method to stderr
// *before* the provider module is loaded (hence the dynamic import below).
for (const m of ['log', 'info', 'debug']) {
  // eslint-disable-next-line no-console
  console[m] = (...args) => console.error(...args);
}

const { default: Provider, errors } = await import('oidc-provider');

// ---------------------------------------------------------------- CLI
function usage(msg) {
  if (msg) process.stderr.write(`server.mjs: ${msg}\n`);
  process.stderr.write('usage: node server.mjs [--host IP] [--port N] [--backchannel-path /path] [--token-path /path] [--interval N] [--ignore-stdin] [--fapi] [--tls-cert FILE --tls-key FILE [--tls-ca FILE]]\n');
  process.exit(2);
}

const opts = {
  host: '127.0.0.1', port: 0, backchannelPath: '/backchannel', tokenPath: '/token', interval: null, ignoreStdin: false,
  tlsCert: null, tlsKey: null, tlsCa: null,
  bridge: false, bridgeCallbackPath: '/ciba-bridge/callback',
  mtls: null,
  fapi: false,
};
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 1) {
    let arg = argv[i];
    let value;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq !== -1) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const take = () => {
      if (value !== undefined) return value;
      i += 1;
      if (i >= argv.length) usage(`missing value for ${arg}`);
      return argv[i];
    };
    switch (arg) {
      case '--port': {
        const v = take();
        if (!/^\d+$/.test(v) || +v > 65535) usage(`invalid port: ${v}`);
        opts.port = +v;
        break;
      }
      case '--host': opts.host = take(); break;
      case '--backchannel-path': opts.backchannelPath = take(); break;
      case '--token-path': opts.tokenPath = take(); break;
      case '--interval': {
        const v = take();
        if (!/^\d+$/.test(v) || +v < 1 || +v > 3600) usage(`invalid interval: ${v}`);
        opts.interval = +v;
        break;
      }
      case '--ignore-stdin': opts.ignoreStdin = true; break;
      case '--tls-cert': opts.tlsCert = take(); break;
      case '--tls-key': opts.tlsKey = take(); break;
      case '--tls-ca': opts.tlsCa = take(); break;
      case '--bridge': opts.bridge = true; break;
      case '--bridge-callback-path': opts.bridgeCallbackPath = take(); break;
      case '--mtls': {
        const { readFileSync } = await import('node:fs');
        opts.mtls = JSON.parse(readFileSync(take(), 'utf8'));
        break;
      }
      case '--fapi': opts.fapi = true; break;
      case '-h': case '--help': usage(); break;
      default: usage(`unknown argument: ${arg}`);
    }
  }
  for (const [name, p] of [['--backchannel-path', opts.backchannelPath], ['--token-path', opts.tokenPath]]) {
    if (!p.startsWith('/') || p.startsWith('/admin') || /[?#\s]/.test(p)) usage(`invalid ${name}: ${p}`);
  }
  if (opts.backchannelPath === opts.tokenPath) usage('backchannel and token paths must differ');
  if (!opts.tlsCert !== !opts.tlsKey) usage('--tls-cert and --tls-key go together');
  if (opts.tlsCa && !opts.tlsCert) usage('--tls-ca needs --tls-cert and --tls-key');
}

// ---------------------------------------------------------------- lifecycle
function shutdown(code = 0) {
  process.exit(code);
}
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
process.on('SIGHUP', () => shutdown(0));
if (!opts.ignoreStdin) {
  process.stdin.on('end', () => shutdown(0));
  process.stdin.on('close', () => shutdown(0));
  process.stdin.on('error', () => shutdown(0));
  process.stdin.resume(); // discard anything written to us, watch for EOF
}

// ---------------------------------------------------------------- state
const state = {
  total: 0,
  byPath: new Map(),
  lastBackchannel: null,
  lastHop: null, // the forwarding headers of the last request counted
  triggered: [], // requests passed to triggerAuthenticationDevice
  tokenLog: [], // every token request: when it arrived and what it was answered
  tlsClientCns: [], // with --tls-ca: the common name of each client certificate seen
};

function resetState() {
  state.total = 0;
  state.byPath.clear();
  state.lastBackchannel = null;
  state.lastHop = null;
  state.triggered = [];
  state.tokenLog = [];
}

function statsJson() {
  const byPath = Object.fromEntries(state.byPath);
  return {
    backchannel: state.byPath.get(opts.backchannelPath) ?? 0,
    token: state.byPath.get(opts.tokenPath) ?? 0,
    total: state.total,
    by_path: byPath,
    tls_client_cns: state.tlsClientCns,
  };
}

// ---------------------------------------------------------------- helpers
function sendJson(res, status, body) {
  const data = Buffer.from(JSON.stringify(body));
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': data.length,
    'cache-control': 'no-store',
  });
  res.end(data);
}

async function readAll(req) {
  const chunks = [];
  for await (const chunk of req.iterator({ destroyOnReturn: false })) chunks.push(chunk);
  return Buffer.concat(chunks);
}

// Parse an x-www-form-urlencoded / JSON body into {name: value}; repeated form
// names become arrays.
function parseParams(contentType, raw) {
  const ct = (contentType || '').split(';')[0].trim().toLowerCase();
  const tryJson = () => {
    try {
      const v = JSON.parse(raw);
      return v && typeof v === 'object' && !Array.isArray(v) ? v : {};
    } catch {
      return null;
    }
  };
  const form = () => {
    const out = {};
    for (const [k, v] of new URLSearchParams(raw)) {
      if (Object.hasOwn(out, k)) {
        out[k] = Array.isArray(out[k]) ? [...out[k], v] : [out[k], v];
      } else {
        out[k] = v;
      }
    }
    return out;
  };
  if (ct === 'application/json' || ct.endsWith('+json')) return tryJson() ?? {};
  if (ct === 'application/x-www-form-urlencoded') return form();
  if (!ct) return tryJson() ?? form();
  return {};
}

// A fresh IncomingMessage that replays an already-read body, so that
// oidc-provider's own body parser reads it normally (no "already parsed body"
// fallback, same 56 KiB limit and content-length checks as usual).
function replayRequest(orig, raw) {
  const replay = new http.IncomingMessage(orig.socket);
  replay._read = () => {};
  replay.method = orig.method;
  replay.url = orig.url;
  replay.httpVersion = orig.httpVersion;
  replay.httpVersionMajor = orig.httpVersionMajor;
  replay.httpVersionMinor = orig.httpVersionMinor;
  replay.rawHeaders = orig.rawHeaders;
  replay.headers = orig.headers;
  replay.rawTrailers = orig.rawTrailers;
  replay.trailers = orig.trailers;
  replay.complete = true;
  if (raw.length) replay.push(raw);
  replay.push(null);
  return replay;
}

// ---------------------------------------------------------------- login_hint_token
function b64ToString(s) {
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(s)) return null;
  const norm = s.replace(/=+$/, '').replace(/-/g, '+').replace(/_/g, '/');
  if (norm.length % 4 === 1) return null;
  return Buffer.from(norm, 'base64').toString('utf8');
}

function jsonObject(text) {
  if (typeof text !== 'string') return null;
  try {
    const v = JSON.parse(text);
    return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

export function decodeLoginHintToken(token) {
  const t = String(token).trim();
  if (t.startsWith('{')) return jsonObject(t); // (a) raw JSON
  const parts = t.split('.');
  if (parts.length === 3 || parts.length === 5) { // (c) compact JWS/JWT (payload not verified)
    return parts.length === 3 ? jsonObject(b64ToString(parts[1])) : null;
  }
  return jsonObject(b64ToString(t)); // (b) base64 / base64url JSON
}

function accountIdFromClaims(claims) {
  const str = (v) => (typeof v === 'string' && v.length ? v : undefined);
  const subId = claims.sub_id && typeof claims.sub_id === 'object' ? claims.sub_id : {};
  return str(claims.sub) ?? str(subId.email) ?? str(subId.username) ?? str(claims.uuid) ?? 'lht-user';
}

// ---------------------------------------------------------------- start
const server = opts.tlsCert
  ? https.createServer({
    cert: fs.readFileSync(opts.tlsCert),
    key: fs.readFileSync(opts.tlsKey),
    ...(opts.tlsCa ? { ca: fs.readFileSync(opts.tlsCa), requestCert: true, rejectUnauthorized: true } : {}),
  })
  : http.createServer();
if (opts.tlsCa) {
  server.on('secureConnection', (socket) => {
    const cn = socket.getPeerCertificate()?.subject?.CN;
    if (cn) state.tlsClientCns.push(cn);
  });
}
server.keepAliveTimeout = 65_000;
let providerCallback = null;
let provider = null;

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(opts.port, opts.host, () => {
    server.off('error', reject);
    resolve();
  });
}).catch((err) => {
  process.stderr.write(`server.mjs: cannot listen on ${opts.host} port ${opts.port}: ${err.message}\n`);
  process.exit(1);
});
const { port } = server.address();
const issuer = `${opts.tlsCert ? 'https' : 'http'}://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}`;

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = {
  ...privateKey.export({ format: 'jwk' }), kid: `test-op-${crypto.randomBytes(4).toString('hex')}`, use: 'sig', alg: 'RS256',
};

const cibaClient = (clientId, secret, method) => ({
  client_id: clientId,
  client_secret: secret,
  token_endpoint_auth_method: method,
  grant_types: ['urn:openid:params:grant-type:ciba'],
  response_types: [],
  redirect_uris: [],
  backchannel_token_delivery_mode: 'poll',
});

// ---------------------------------------------------------------- mTLS (--mtls)
const MTLS_ALIASES = { '/mtls/token': opts.tokenPath, '/mtls/backchannel': opts.backchannelPath };

function mtlsCertificate(ctx) {
  const value = ctx.get(opts.mtls.header);
  if (!value) return undefined;
  try {
    return decodeURIComponent(value);
  } catch {
    return undefined;
  }
}

function mtlsClients() {
  if (!opts.mtls) return [];
  return opts.mtls.clients.map(({ certificate_pem: pem, ...meta }) => {
    const client = {
      ...cibaClient(meta.client_id, undefined, meta.token_endpoint_auth_method),
      ...meta,
      tls_client_certificate_bound_access_tokens: true,
    };
    delete client.client_secret;
    if (pem) {
      const cert = new crypto.X509Certificate(pem);
      const x5c = pem.replace(/-----(BEGIN|END) CERTIFICATE-----|\s/g, '');
      client.jwks = { keys: [{ ...cert.publicKey.export({ format: 'jwk' }), x5c: [x5c] }] };
    }
    return client;
  });
}

function mtlsFeature() {
  if (!opts.mtls) return { enabled: false };
  const ca = new crypto.X509Certificate(opts.mtls.ca_pem);
  return {
    enabled: true,
    certificateBoundAccessTokens: true,
    tlsClientAuth: true,
    selfSignedTlsClientAuth: true,
    getCertificate: mtlsCertificate,
    certificateAuthorized(ctx) {
      const pem = mtlsCertificate(ctx);
      if (!pem) return false;
      try {
        const cert = new crypto.X509Certificate(pem);
        const now = Date.now();
        return cert.checkIssued(ca) && cert.verify(ca.publicKey)
          && Date.parse(cert.validFrom) <= now && now <= Date.parse(cert.validTo);
      } catch {
        return false;
      }
    },
    certificateSubjectMatches(ctx, property, expected) {
      const cert = new crypto.X509Certificate(mtlsCertificate(ctx));
      switch (property) {
        case 'tls_client_auth_subject_dn':
          // X509Certificate.subject lists RDNs in certificate order, one a line; RFC 4514
          // writes them most specific first. Test names need no escaping.
          return cert.subject.split('\n').reverse().join(',') === expected;
        case 'tls_client_auth_san_dns':
          return (cert.subjectAltName ?? '').split(', ').includes(`DNS:${expected}`);
        default:
          return false;
      }
    },
  };
}

// --bridge: code-flow clients whose redirect_uri is the gateway's callback on loopback.
const bridgeClient = (clientId, secret, method) => ({
  client_id: clientId,
  client_secret: secret,
  token_endpoint_auth_method: method,
  application_type: 'native',
  grant_types: ['authorization_code'],
  response_types: ['code'],
  redirect_uris: [`http://127.0.0.1${opts.bridgeCallbackPath}`],
});
const makeClient = opts.bridge ? bridgeClient : cibaClient;

// FAPI-CIBA clients (--fapi): private_key_jwt with the test keys in tests/data/fapi.
const fapiClient = (clientId, jwksFile) => {
  const { client_secret: _unused, ...base } = cibaClient(clientId, undefined, 'private_key_jwt');
  const file = new URL(`../data/fapi/${jwksFile}`, import.meta.url);
  return { ...base, jwks: JSON.parse(fs.readFileSync(file, 'utf8')) };
};

provider = new Provider(issuer, {
  clients: [
    makeClient('client-post', 'post-secret-0123456789', 'client_secret_post'),
    makeClient('client-basic', 'basic-secret-0123456789', 'client_secret_basic'),
    makeClient('client-other', 'other-secret-0123456789', 'client_secret_post'),
    ...mtlsClients(),
    ...(opts.fapi ? [fapiClient('fapi-a', 'client-a.jwks.json'), fapiClient('fapi-b', 'client-b.jwks.json')] : []),
  ],
  ...(opts.mtls ? {
    clientAuthMethods: ['client_secret_basic', 'client_secret_jwt', 'client_secret_post', 'private_key_jwt', 'none',
      'tls_client_auth', 'self_signed_tls_client_auth'],
  } : {}),
  jwks: { keys: [signingJwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  scopes: ['openid', 'profile', 'email'],
  claims: {
    openid: ['sub'],
    profile: ['name'],
    email: ['email', 'email_verified'],
  },
  routes: {
    backchannel_authentication: opts.backchannelPath,
    token: opts.tokenPath,
    jwks: '/jwks',
  },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() { return { sub: id }; },
    };
  },
  ttl: {
    AccessToken: () => 3600,
    IdToken: () => 3600,
    Grant: () => 3600,
    RefreshToken: () => 3600,
    // --bridge: the user may open the link as late as the gateway's request lives.
    PushedAuthorizationRequest: 600,
    Interaction: 600,
    // Same as the library default: requested_expiry honoured, capped at 600 s.
    BackchannelAuthenticationRequest(ctx) {
      const requested = ctx?.oidc?.params?.requested_expiry;
      return requested ? Math.min(600, +requested) : 600;
    },
  },
  features: {
    devInteractions: { enabled: opts.bridge },
    pushedAuthorizationRequests: { enabled: opts.bridge },
    mTLS: mtlsFeature(),
    requestObjects: { enabled: opts.fapi },
    ciba: {
      enabled: !opts.bridge,
      deliveryModes: ['poll'],
      async processLoginHint(ctx, loginHint) {
        return loginHint;
      },
      async processLoginHintToken(ctx, loginHintToken) {
        const claims = decodeLoginHintToken(loginHintToken);
        if (!claims) throw new errors.InvalidRequest('could not decode login_hint_token');
        return accountIdFromClaims(claims);
      },
      async validateRequestContext() {},
      async validateBindingMessage(ctx, bindingMessage) {
        if (typeof bindingMessage === 'string' && bindingMessage.length > 1000) {
          throw new errors.InvalidBindingMessage('binding_message must not exceed 1000 characters');
        }
      },
      async verifyUserCode() {},
      async triggerAuthenticationDevice(ctx, request, account, client) {
        state.triggered.push({
          auth_req_id: request.jti,
          account_id: account.accountId,
          client_id: client.clientId,
          scope: request.scope,
          binding_message: request.params?.binding_message ?? null,
          requested_expiry: request.params?.requested_expiry ?? null,
          expires_in: request.expiration,
        });
      },
    },
  },
});

// Counting middleware: registered via provider.use, which oidc-provider places
// before its own router, so requests it refuses are counted too.
provider.use(async (ctx, next) => {
  state.total += 1;
  state.byPath.set(ctx.path, (state.byPath.get(ctx.path) ?? 0) + 1);
  state.lastHop = {
    path: ctx.path,
    // The request-target as it arrived (the request line read as latin1, as node reads it).
    target: ctx.req.url,
    host: ctx.get('host') || null,
    x_forwarded_for: ctx.get('x-forwarded-for') || null,
    x_request_id: ctx.get('x-request-id') || null,
    // An expectation the gateway must not pass on (it sends its whole body at once).
    expect: ctx.get('expect') || null,
    // Every header whose name looks like a client-certificate header, as received.
    cert_headers: Object.keys(ctx.headers).filter((k) => /client.?cert/i.test(k)).sort(),
    client_cert: opts.mtls ? (ctx.get(opts.mtls.header) || null) : null,
  };
  const arrived = Date.now();
  await next();
  if (ctx.path === opts.tokenPath) {
    state.tokenLog.push({
      at_ms: arrived,
      status: ctx.status,
      error: (ctx.body && typeof ctx.body === 'object' && ctx.body.error) || null,
    });
  }
  // oidc-provider 9 does not publish RFC 8705 aliases itself; --mtls adds them.
  if (opts.mtls && ctx.path === '/.well-known/openid-configuration' && ctx.body && typeof ctx.body === 'object') {
    ctx.body = {
      ...ctx.body,
      mtls_endpoint_aliases: Object.fromEntries(Object.entries({
        token_endpoint: '/mtls/token',
        backchannel_authentication_endpoint: '/mtls/backchannel',
      }).map(([k, v]) => [k, `${issuer}${v}`])),
    };
  }
  // oidc-provider's ack has no interval; --interval adds one, as many OPs send it.
  if (opts.interval !== null && ctx.path === opts.backchannelPath && ctx.status === 200
      && ctx.body && typeof ctx.body === 'object' && ctx.body.auth_req_id) {
    ctx.body = { ...ctx.body, interval: opts.interval };
  }
});

provider.on('server_error', (ctx, err) => {
  process.stderr.write(`server.mjs: server_error on ${ctx.method} ${ctx.path}: ${err?.stack ?? err}\n`);
});

providerCallback = provider.callback();

// ---------------------------------------------------------------- admin API
async function finishRequest(res, body, result) {
  const id = body.auth_req_id;
  if (typeof id !== 'string' || !id) {
    return sendJson(res, 400, { error: 'invalid_request', error_description: 'auth_req_id is required' });
  }
  const request = await provider.BackchannelAuthenticationRequest.find(id, { ignoreExpiration: true });
  if (!request) {
    return sendJson(res, 404, { error: 'not_found', error_description: 'unknown auth_req_id' });
  }
  if (request.consumed) {
    return sendJson(res, 409, { error: 'consumed', error_description: 'request already redeemed' });
  }
  if (request.grantId || request.error) {
    return sendJson(res, 409, { error: 'already_resolved', error_description: 'request already approved or denied' });
  }
  if (result === 'approve') {
    const grant = new provider.Grant({ accountId: request.accountId, clientId: request.clientId });
    grant.addOIDCScope(request.scope ? [...new Set(['openid', ...request.scope.split(' ')])].join(' ') : 'openid');
    if (request.claims && Object.keys(request.claims).length) {
      const claims = [...Object.keys(request.claims.id_token ?? {}), ...Object.keys(request.claims.userinfo ?? {})];
      if (claims.length) grant.addOIDCClaims(claims);
    }
    await grant.save();
    await provider.backchannelResult(request, grant);
  } else {
    await provider.backchannelResult(request, new errors.AccessDenied(body.error_description || 'end-user denied the request'));
  }
  return sendJson(res, 200, { ok: true });
}

async function handleAdmin(req, res, url) {
  const route = `${req.method} ${url.pathname}`;
  switch (route) {
    case 'GET /admin/stats':
      return sendJson(res, 200, statsJson());
    case 'POST /admin/reset':
      await readAll(req);
      resetState();
      return sendJson(res, 200, { ok: true });
    case 'GET /admin/last-backchannel':
      if (!state.lastBackchannel) return sendJson(res, 404, { error: 'no backchannel request recorded' });
      return sendJson(res, 200, state.lastBackchannel);
    case 'GET /admin/last-hop':
      if (!state.lastHop) return sendJson(res, 404, { error: 'no request recorded' });
      return sendJson(res, 200, state.lastHop);
    case 'GET /admin/token-log':
      return sendJson(res, 200, state.tokenLog);
    case 'POST /admin/access-token': {
      // What the OP holds for an access token: its client and certificate binding.
      const raw = (await readAll(req)).toString('utf8');
      const { token } = parseParams(req.headers['content-type'], raw);
      const at = typeof token === 'string' ? await provider.AccessToken.find(token) : undefined;
      if (!at) return sendJson(res, 404, { error: 'not_found' });
      return sendJson(res, 200, { client_id: at.clientId, 'x5t#S256': at['x5t#S256'] ?? null });
    }
    case 'GET /admin/requests':
      return sendJson(res, 200, state.triggered);
    case 'POST /admin/approve':
    case 'POST /admin/deny': {
      const raw = (await readAll(req)).toString('utf8');
      const body = parseParams(req.headers['content-type'], raw);
      return finishRequest(res, body, url.pathname === '/admin/approve' ? 'approve' : 'deny');
    }
    default:
      return sendJson(res, 404, { error: 'not_found', error_description: `no admin route ${route}` });
  }
}

// ---------------------------------------------------------------- dispatch
server.on('request', async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    if (url.pathname === '/admin' || url.pathname.startsWith('/admin/')) {
      await handleAdmin(req, res, url);
      return;
    }
    // A vendor-style cancel call (Signaturgruppen: DELETE /op/api/v1/ciba/{auth_req_id}):
    // ends a pending request as denied, 204; unknown or finished ids get 404.
    const cancel = /^\/op\/api\/v1\/ciba\/([^/]+)$/.exec(url.pathname);
    if (cancel && req.method === 'DELETE') {
      state.total += 1;
      state.byPath.set('cancel', (state.byPath.get('cancel') ?? 0) + 1);
      const request = await provider.BackchannelAuthenticationRequest.find(decodeURIComponent(cancel[1]));
      if (!request || request.consumed || request.grantId || request.error) {
        return sendJson(res, 404, { error: 'not_found', error_description: 'no pending request with that id' });
      }
      await provider.backchannelResult(request, new errors.AccessDenied('cancelled by the client'));
      res.writeHead(204);
      res.end();
      return;
    }
    // The mTLS aliases (--mtls) are the same endpoints: counted under their own name too.
    if (opts.mtls && MTLS_ALIASES[url.pathname]) {
      state.byPath.set(`alias:${url.pathname}`, (state.byPath.get(`alias:${url.pathname}`) ?? 0) + 1);
      req.url = MTLS_ALIASES[url.pathname] + url.search;
      url.pathname = MTLS_ALIASES[url.pathname];
    }
    if (url.pathname === opts.backchannelPath) {
      const raw = await readAll(req);
      const rawBody = raw.toString('utf8');
      state.lastBackchannel = {
        method: req.method,
        content_type: req.headers['content-type'] ?? null,
        content_length: req.headers['content-length'] ?? null,
        authorization: req.headers.authorization ?? null,
        raw_body: rawBody,
        params: parseParams(req.headers['content-type'], rawBody),
      };
      providerCallback(replayRequest(req, raw), res);
      return;
    }
    providerCallback(req, res);
  } catch (err) {
    process.stderr.write(`server.mjs: request handling failed: ${err?.stack ?? err}\n`);
    if (!res.headersSent) sendJson(res, 500, { error: 'server_error', error_description: String(err?.message ?? err) });
    else res.destroy();
  }
});

process.stdout.write(`READY ${port}\n`);
