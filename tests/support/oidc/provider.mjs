// A real OpenID Provider for the tests: panva's oidc-provider (certified),
// served over HTTPS with a test-CA certificate, its own login and consent
// pages (devInteractions), static clients and test accounts.
//
// The tests can also make the token endpoint misbehave for the next
// exchange (POST /__test/tamper?mode=…): the provider issues its real
// answer and this wrapper changes the id_token or the body afterwards, so
// every refusal is tested against otherwise genuine traffic.
//
// Config: one JSON object on argv[2] (see tests/support/oidc.rs).
// Prints "listening PORT" once it serves.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const config = JSON.parse(process.argv[2]);
const modules = path.join(config.modules, 'node_modules');
const load = (name, file) => import(pathToFileURL(path.join(modules, name, file)).href);
const { default: Provider } = await load('oidc-provider', 'lib/index.js');
const jose = await load('jose', 'dist/webapi/index.js');

const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const signingJwk = { ...(await jose.exportJWK(privateKey)), kid: 'test-key-1', alg: 'RS256', use: 'sig' };
// Same kid, another key: "a wrong signature" rather than "an unknown key".
const { privateKey: otherKey } = await jose.generateKeyPair('RS256', { extractable: true });

// Accounts: the configured ones, and any other name typed at the login page
// as `NAME@example.com`, verified, without groups.
const accounts = config.accounts || {};
function claimsOf(sub) {
  const known = accounts[sub] || {};
  return {
    sub,
    email: known.email ?? `${sub}@example.com`,
    email_verified: known.email_verified ?? true,
    name: known.name ?? sub,
    groups: known.groups ?? [],
    ...(known.hd ? { hd: known.hd } : {}),
  };
}

const provider = new Provider(config.issuer, {
  clients: config.clients.map((c) => ({
    client_id: c.id,
    client_secret: c.secret,
    redirect_uris: c.redirect_uris,
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
  })),
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
    hd: ['hd'],
  },
  scopes: ['openid', 'email', 'profile', 'groups', 'hd'],
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  jwks: { keys: [signingJwk] },
  cookies: { keys: ['portcullis-test-cookie-key'] },
  async findAccount(_ctx, sub) {
    return { accountId: sub, claims: async () => claimsOf(sub) };
  },
});

let tamper = null;
const counts = { token: 0, discovery: 0, jwks: 0 };

async function forge(idToken, mode, clientSecret) {
  const claims = jose.decodeJwt(idToken);
  const now = Math.floor(Date.now() / 1000);
  const header = { alg: 'RS256', kid: signingJwk.kid, typ: 'JWT' };
  const sign = (c, key = privateKey, h = header) => new jose.SignJWT(c).setProtectedHeader(h).sign(key);
  switch (mode) {
    case 'wrong_signature':
      return sign(claims, otherKey);
    case 'alg_none': {
      const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
      return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
    }
    case 'hs256_client_secret':
      return sign(claims, new TextEncoder().encode(clientSecret), { alg: 'HS256', typ: 'JWT' });
    case 'unknown_kid':
      return sign(claims, otherKey, { ...header, kid: 'not-published' });
    case 'wrong_iss':
      return sign({ ...claims, iss: 'https://evil.example' });
    case 'wrong_aud':
      return sign({ ...claims, aud: 'someone-else' });
    case 'expired':
      return sign({ ...claims, iat: now - 7200, exp: now - 3600 });
    case 'future':
      return sign({ ...claims, iat: now + 3600, exp: now + 7200 });
    case 'wrong_nonce':
      return sign({ ...claims, nonce: 'not-the-nonce' });
    case 'unverified_email':
      return sign({ ...claims, email_verified: false });
    // Validly signed: what the provider says of how it authenticated.
    case 'amr_mfa':
      return sign({ ...claims, amr: ['pwd', 'otp'] });
    case 'amr_pwd':
      return sign({ ...claims, amr: ['pwd'] });
    default:
      throw new Error(`unknown tamper mode ${mode}`);
  }
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/__test/tamper' && ctx.method === 'POST') {
    tamper = ctx.query.mode || null;
    ctx.body = { tamper };
    return;
  }
  if (ctx.path === '/__test/counts') {
    ctx.body = counts;
    return;
  }
  if (ctx.path === '/.well-known/openid-configuration') counts.discovery += 1;
  if (ctx.path === '/jwks') counts.jwks += 1;
  if (ctx.path === '/token') counts.token += 1;
  await next();
  if (ctx.path !== '/token' || !tamper) return;
  const mode = tamper;
  tamper = null;
  if (mode === 'huge') {
    ctx.status = 200;
    ctx.type = 'application/json';
    ctx.body = JSON.stringify({ access_token: 'a', token_type: 'Bearer', id_token: 'x'.repeat(2 << 20) });
    return;
  }
  if (mode === 'garbage') {
    ctx.status = 200;
    ctx.type = 'text/html';
    ctx.body = '<html><body>upstream hiccup <script>alert(1)</script></body></html>';
    return;
  }
  if (ctx.status === 200 && ctx.body && ctx.body.id_token) {
    const secret = config.clients[0].secret;
    ctx.body = { ...ctx.body, id_token: await forge(ctx.body.id_token, mode, secret) };
  }
});

const server = https.createServer(
  { cert: readFileSync(config.cert), key: readFileSync(config.key) },
  provider.callback(),
);
server.listen(config.port, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
