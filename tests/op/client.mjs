// A CIBA client built on openid-client 6, used exactly as an application would: a
// Configuration from explicit server metadata (or from discovery()), client_secret_post, then
// initiateBackchannelAuthentication and pollBackchannelAuthenticationGrant. The integration
// tests run it against the gateway to prove that the library's polling (wait `interval`, add
// 5 s after each slow_down, honour Retry-After) gets through.
//
// Usage:
//   CLIENT_SECRET=... node tests/op/client.mjs --issuer URL --gateway URL --client-id ID
//       [--login-hint HINT] [--timeout-ms N]
//   CLIENT_SECRET=... node tests/op/client.mjs --discover URL --client-id ID
//       [--login-hint HINT] [--timeout-ms N]
//
// --discover URL: the Configuration comes from openid-client's discovery() at URL, unchanged
// (the issuer in the document must be URL, as the library requires).
//
// The secret comes from the environment so it never shows in a process list.
//
// stdout carries one JSON line per event and nothing else:
//   {"event":"discovered","issuer":"..."}   with --discover, once the document is accepted
//   {"event":"ack","auth_req_id":"...","interval":n,"expires_in":n}   as soon as it arrives
//   {"event":"outcome","outcome":"tokens","has_access_token":true,"elapsed_ms":n}
//   {"event":"outcome","outcome":"error","error":"access_denied","elapsed_ms":n}
//   {"event":"outcome","outcome":"timeout","elapsed_ms":n}
// Token values, the secret and the login hint are never printed.
//
// Exit codes: 0 tokens, 1 any other outcome, 2 a bad argument.
//
// Why not always discovery(): the gateway's rewritten discovery document keeps the OP's
// issuer while its URL is the gateway's, and openid-client refuses a document whose issuer
// differs from the URL it was fetched from. In front of node-oidc-provider (whose issuer is
// its own address) the metadata is therefore given explicitly; the demo OP's issuer is the
// gateway's URL, so --discover works there.

import * as client from 'openid-client';

function usage(message) {
  process.stderr.write(`client.mjs: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = { loginHint: 'alice', timeoutMs: 30000 };
  const names = {
    '--issuer': 'issuer',
    '--gateway': 'gateway',
    '--discover': 'discover',
    '--client-id': 'clientId',
    '--login-hint': 'loginHint',
    '--timeout-ms': 'timeoutMs',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = names[argv[i]];
    if (!key || argv[i + 1] === undefined) usage(`bad argument ${argv[i]}`);
    args[key] = argv[i + 1];
  }
  const required = args.discover ? ['clientId'] : ['issuer', 'gateway', 'clientId'];
  if (args.discover && (args.issuer || args.gateway)) {
    usage('--discover replaces --issuer and --gateway');
  }
  for (const key of required) {
    if (!args[key]) usage(`missing --${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
  }
  args.timeoutMs = Number(args.timeoutMs);
  if (!Number.isInteger(args.timeoutMs) || args.timeoutMs <= 0) usage('bad --timeout-ms');
  if (!process.env.CLIENT_SECRET) usage('CLIENT_SECRET is not set');
  return args;
}

function emit(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

// The OAuth error code of a failure, or a name for it; never its message, which may quote a
// response body.
function errorCode(err) {
  if (typeof err?.error === 'string') return err.error;
  if (typeof err?.code === 'string') return err.code;
  return err?.name ?? 'unknown';
}

// A Configuration from explicit metadata: the OP's issuer, the gateway's endpoints.
function explicitConfig(args) {
  const gateway = args.gateway.replace(/\/$/, '');
  const config = new client.Configuration(
    {
      issuer: args.issuer,
      backchannel_authentication_endpoint: `${gateway}/backchannel`,
      token_endpoint: `${gateway}/token`,
    },
    args.clientId,
    undefined,
    client.ClientSecretPost(process.env.CLIENT_SECRET),
  );
  // Plain http, on loopback only.
  client.allowInsecureRequests(config);
  return config;
}

// A Configuration from discovery() at the URL, as an application writes it.
async function discoveredConfig(args) {
  const config = await client.discovery(
    new URL(args.discover),
    args.clientId,
    undefined,
    client.ClientSecretPost(process.env.CLIENT_SECRET),
    // Plain http, on loopback only.
    { execute: [client.allowInsecureRequests] },
  );
  emit({ event: 'discovered', issuer: config.serverMetadata().issuer });
  return config;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  let config;
  try {
    config = args.discover ? await discoveredConfig(args) : explicitConfig(args);
  } catch (err) {
    emit({ event: 'outcome', outcome: 'error', error: errorCode(err), elapsed_ms: 0 });
    return 1;
  }

  const started = Date.now();
  const deadline = AbortSignal.timeout(args.timeoutMs);
  const elapsed = () => Date.now() - started;
  try {
    const ack = await client.initiateBackchannelAuthentication(config, {
      scope: 'openid',
      login_hint: args.loginHint,
    });
    emit({
      event: 'ack',
      auth_req_id: ack.auth_req_id,
      interval: ack.interval ?? null,
      expires_in: ack.expires_in,
    });
    const tokens = await client.pollBackchannelAuthenticationGrant(config, ack, undefined, {
      signal: deadline,
    });
    emit({
      event: 'outcome',
      outcome: 'tokens',
      has_access_token: typeof tokens.access_token === 'string',
      elapsed_ms: elapsed(),
    });
    return 0;
  } catch (err) {
    if (deadline.aborted) {
      emit({ event: 'outcome', outcome: 'timeout', elapsed_ms: elapsed() });
    } else {
      emit({ event: 'outcome', outcome: 'error', error: errorCode(err), elapsed_ms: elapsed() });
    }
    return 1;
  }
}

process.exitCode = await main();
