// An OpenID Provider on 127.0.0.1 for gatehouse's social login tests, started by
// tests/api/oidc.rs with one JSON argument; prints {"issuer": ...} once listening.
//
// mode "real": the certified `oidc-provider` with one client (PKCE S256 required) and test
// accounts; GET /interaction/:uid?account=<sub> signs <sub> in and consents, so a plain HTTP
// client following redirects completes the flow.
// mode "fake": discovery, JWKS, an authorization endpoint that redirects straight back, and a
// token endpoint whose ID token has one `fault` (wrong nonce, audience or key, or expired),
// for the refusals a correct provider never produces.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createSign, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import Provider from 'oidc-provider';

interface Account {
  email?: string;
  email_verified?: boolean;
  preferred_username?: string;
  name?: string;
}

interface Settings {
  mode: 'real' | 'fake';
  port?: number;
  clientId: string;
  clientSecret: string;
  redirectUris: string[];
  accounts: Record<string, Account>;
  fault?: 'wrong_nonce' | 'wrong_audience' | 'expired' | 'bad_signature' | null;
}

const settings = JSON.parse(process.argv[2] ?? '{}') as Settings;

function newKey(kid: string) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };
  return { privateKey, jwk };
}

const server = createServer();
server.listen(settings.port ?? 0, '127.0.0.1', () => {
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const issuer = `http://127.0.0.1:${port}`;
  const handler = settings.mode === 'fake' ? fakeProvider(issuer) : realProvider(issuer);
  server.on('request', (req, res) => {
    handler(req, res).catch((e: unknown) => {
      console.error(e);
      res.statusCode = 500;
      res.end('helper error');
    });
  });
  console.log(JSON.stringify({ issuer }));
});

function realProvider(issuer: string) {
  const { jwk } = newKey('real-1');
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: settings.clientId,
        client_secret: settings.clientSecret,
        redirect_uris: settings.redirectUris,
        grant_types: ['authorization_code'],
        response_types: ['code'],
      },
    ],
    jwks: { keys: [jwk] },
    pkce: { required: () => true, methods: ['S256'] },
    features: { devInteractions: { enabled: false } },
    // The scope claims in the ID token itself, as most providers put them.
    conformIdTokenClaims: false,
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['preferred_username', 'name'] },
    cookies: { keys: [randomBytes(16).toString('hex')] },
    async findAccount(_ctx: unknown, sub: string) {
      const account = settings.accounts[sub];
      if (!account) return undefined;
      return { accountId: sub, claims: async () => ({ sub, ...account }) };
    },
  });
  const callback = provider.callback();
  return async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', issuer);
    if (!url.pathname.startsWith('/interaction/')) {
      callback(req, res);
      return;
    }
    const details = await provider.interactionDetails(req, res);
    if (details.prompt.name === 'login') {
      const accountId = url.searchParams.get('account') ?? Object.keys(settings.accounts)[0];
      await provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
      return;
    }
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    const missing = details.prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  };
}

function fakeProvider(issuer: string) {
  const signing = newKey('fake-1');
  const other = newKey('fake-1');
  const pending = new Map<string, string>(); // code -> nonce
  const json = (res: ServerResponse, body: unknown) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(body));
  };
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const sign = (claims: Record<string, unknown>, key: KeyObject) => {
    const input = `${b64({ alg: 'RS256', typ: 'JWT', kid: 'fake-1' })}.${b64(claims)}`;
    const signature = createSign('RSA-SHA256').update(input).sign(key).toString('base64url');
    return `${input}.${signature}`;
  };
  return async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', issuer);
    switch (url.pathname) {
      case '/.well-known/openid-configuration':
        return json(res, {
          issuer,
          authorization_endpoint: `${issuer}/auth`,
          token_endpoint: `${issuer}/token`,
          jwks_uri: `${issuer}/jwks`,
          response_types_supported: ['code'],
          subject_types_supported: ['public'],
          id_token_signing_alg_values_supported: ['RS256'],
        });
      case '/jwks': {
        const { kid, use, alg, kty, n, e } = signing.jwk;
        return json(res, { keys: [{ kid, use, alg, kty, n, e }] });
      }
      case '/auth': {
        const code = randomBytes(16).toString('hex');
        pending.set(code, url.searchParams.get('nonce') ?? '');
        const back = new URL(url.searchParams.get('redirect_uri') ?? '');
        back.searchParams.set('code', code);
        back.searchParams.set('state', url.searchParams.get('state') ?? '');
        res.statusCode = 302;
        res.setHeader('location', back.toString());
        return res.end();
      }
      case '/token': {
        let body = '';
        for await (const chunk of req) body += chunk;
        const code = new URLSearchParams(body).get('code') ?? '';
        const nonce = pending.get(code);
        pending.delete(code);
        if (nonce === undefined) {
          res.statusCode = 400;
          return json(res, { error: 'invalid_grant' });
        }
        const now = Math.floor(Date.now() / 1000);
        const fault = settings.fault;
        const claims = {
          iss: issuer,
          sub: 'fake-subject',
          aud: fault === 'wrong_audience' ? 'someone-else' : settings.clientId,
          iat: fault === 'expired' ? now - 7200 : now,
          exp: fault === 'expired' ? now - 3600 : now + 300,
          nonce: fault === 'wrong_nonce' ? 'not-the-nonce' : nonce,
          email: 'fake@example.com',
          email_verified: true,
          preferred_username: 'fake',
        };
        const key = fault === 'bad_signature' ? other.privateKey : signing.privateKey;
        return json(res, {
          access_token: randomBytes(16).toString('hex'),
          token_type: 'Bearer',
          expires_in: 300,
          id_token: sign(claims, key),
        });
      }
      default:
        res.statusCode = 404;
        return res.end();
    }
  };
}
