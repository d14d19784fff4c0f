// A real OpenID Provider (panva/oidc-provider, a certified implementation) for the web
// UI's single sign-on tests. Not a mock: discovery, JWKS, the authorization code flow
// with PKCE, ID tokens signed with its own RSA key, RP-initiated logout, and its own
// login and consent pages (its development interactions: any password is taken).
//
//   node provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI POST_LOGOUT_URI
//
// People and their groups are in GROUPS below. `POST /_test/mode/NAME` changes what the
// token endpoint hands out, for the tests of refusals:
//   normal   - as issued
//   expired  - the same claims re-signed with the provider's own key, expired an hour ago
//   tampered - the payload changed (groups: admins) under the original signature
import { createServer } from 'node:http';
import Provider from 'oidc-provider';
import * as jose from 'jose';

const [port, clientId, clientSecret, redirectUri, postLogoutUri] = process.argv.slice(2);
if (!postLogoutUri) {
  console.error('usage: node provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI POST_LOGOUT_URI');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

const GROUPS = {
  alice: ['sky-admins'],
  bob: ['sky-users', 'staff'],
  vera: ['sky-viewers'],
  mallory: ['staff'],
};

const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await jose.exportJWK(privateKey)), kid: 'test-key-1', alg: 'RS256', use: 'sig' };

let mode = 'normal';

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    post_logout_redirect_uris: [postLogoutUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, email: `${id}@example.org`, groups: GROUPS[id] ?? [] };
      },
    };
  },
  claims: { openid: ['sub'], profile: ['preferred_username'], email: ['email'], groups: ['groups'] },
  scopes: ['openid', 'profile', 'email', 'groups'],
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  cookies: { keys: ['a-test-only-cookie-key'] },
  jwks: { keys: [jwk] },
});

// After the token endpoint answers: the refusal modes.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path !== '/token' || mode === 'normal' || !ctx.body || !ctx.body.id_token) return;
  const [header, payload, signature] = ctx.body.id_token.split('.');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  if (mode === 'expired') {
    const now = Math.floor(Date.now() / 1000);
    claims.iat = now - 7200;
    claims.exp = now - 3600;
    ctx.body.id_token = await new jose.SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: jwk.kid })
      .sign(privateKey);
  } else if (mode === 'tampered') {
    claims.groups = ['sky-admins'];
    const forged = Buffer.from(JSON.stringify(claims)).toString('base64url');
    ctx.body.id_token = `${header}.${forged}.${signature}`;
  }
});

const handler = provider.callback();
createServer((req, res) => {
  const m = req.method === 'POST' && req.url.match(/^\/_test\/mode\/(normal|expired|tampered)$/);
  if (m) {
    mode = m[1];
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`mode ${mode}\n`);
    return;
  }
  handler(req, res);
}).listen(Number(port), '127.0.0.1', () => {
  console.log(`provider ${issuer} ready`);
});
