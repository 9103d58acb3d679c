// Social login in Chromium against a real OpenID Provider (oidc-provider, src/oidc-provider.ts):
// a page on http://localhost:<port> shows gatehouse's login button; a click goes through the
// provider's login and consent and back. In cookie mode Apollo Client then reads `me` with the
// session cookie the callback set; in bearer mode (a fresh browser) it exchanges the login code
// for a token, which works once.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';

import { offlineBrowser, serveBundle } from './browser.js';
import { check } from './check.js';
import { startGatehouse } from './gatehouse.js';
import type { SocialResult } from './social-entry.js';

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((ok) => probe.listen(0, '127.0.0.1', ok));
  const { port } = probe.address() as AddressInfo;
  await new Promise((ok) => probe.close(ok));
  return port;
}

const app = await serveBundle('social-page.js', 'app');
const pageOrigin = app.origin;

// The provider registers gatehouse's callback, so gatehouse's address is chosen first.
const apiPort = await freePort();
const apiOrigin = `http://localhost:${apiPort}`;
const provider = spawn(
  process.execPath,
  [
    '--import',
    'tsx',
    'src/oidc-provider.ts',
    JSON.stringify({
      mode: 'real',
      clientId: 'app',
      clientSecret: 'app-secret',
      redirectUris: [`${apiOrigin}/auth/oidc/acme/callback`],
      accounts: { 'ada-sub': { email: 'ada@example.com', email_verified: true, preferred_username: 'ada' } },
    }),
  ],
  { cwd: resolve(import.meta.dirname, '..'), stdio: ['ignore', 'pipe', 'ignore'] },
);
const issuer = await new Promise<string>((ok, fail) => {
  const timer = setTimeout(() => fail(new Error('the OpenID Provider did not start')), 60_000);
  createInterface({ input: provider.stdout! }).on('line', (line) => {
    try {
      ok(JSON.parse(line).issuer);
      clearTimeout(timer);
    } catch {
      // not the address line
    }
  });
  provider.on('exit', (code) => fail(new Error(`the OpenID Provider exited with ${code}`)));
});

const gatehouse = await startGatehouse({
  BIND: `127.0.0.1:${apiPort}`,
  PUBLIC_URL: apiOrigin,
  CORS_ORIGINS: pageOrigin,
  OIDC_PROVIDERS: 'acme',
  OIDC_ACME_ISSUER: issuer,
  OIDC_ACME_CLIENT_ID: 'app',
  OIDC_ACME_CLIENT_SECRET: 'app-secret',
  OIDC_RETURN_URLS: `${pageOrigin}/`,
});

/** One sign-in in a browser of its own: load the page, click the button, come back. */
async function signIn(mode: 'cookie' | 'bearer') {
  const offline = await offlineBrowser([app.host, `localhost:${apiPort}`, new URL(issuer).host]);
  try {
    const page = await offline.context.newPage();
    const toApi: Array<{ url: string; authorization?: string }> = [];
    page.on('request', (request) => {
      if (request.url().startsWith(apiOrigin)) {
        toApi.push({ url: request.url(), authorization: request.headers()['authorization'] });
      }
    });
    const result = async () => {
      await page.waitForFunction(() => window.socialResult !== undefined, undefined, { timeout: 30_000 });
      return (await page.evaluate(() => window.socialResult)) as SocialResult;
    };
    await page.goto(`${pageOrigin}/?api=${encodeURIComponent(`${apiOrigin}/graphql`)}&mode=${mode}`);
    const ready = await result();
    check(ready.stage === 'ready' && ready.provider === 'acme', JSON.stringify(ready));
    await page.click('#login-acme');
    await page.waitForURL((url) => url.origin === pageOrigin && url.searchParams.has('login_code'), {
      timeout: 30_000,
    });
    const back = new URL(page.url());
    const done = await result();
    check(done.stage === 'done', JSON.stringify(done));
    // The URL carries a one-time code, never a token or the session.
    const session = (await offline.context.cookies(apiOrigin)).find((c) => c.name === 'gatehouse_session');
    check(session && session.httpOnly, 'the callback set the HttpOnly session cookie');
    check(!back.href.includes(session.value), 'the session token is not in the URL');
    check([...back.searchParams.keys()].every((k) => ['api', 'mode', 'login_code'].includes(k)), back.search);
    if (offline.blocked.length > 0) throw new Error(`blocked requests: ${offline.blocked.join(' ')}`);
    return { done, toApi };
  } finally {
    await offline.close();
  }
}

try {
  const cookie = await signIn('cookie');
  check(cookie.done.user?.username === 'ada' && cookie.done.user.roles.includes('user'), JSON.stringify(cookie.done));
  check(
    cookie.toApi.every((r) => r.authorization === undefined),
    'cookie mode sends no Authorization header',
  );
  console.log('  social | cookie mode: signed in through the provider, me answered with the cookie: ok');

  const bearer = await signIn('bearer');
  check(bearer.done.user?.id === cookie.done.user.id, `the same account: ${JSON.stringify(bearer.done)}`);
  check(bearer.done.provider === 'acme', 'the identity is listed');
  check(bearer.done.secondExchange === 'BAD_USER_INPUT', `a login code works once: ${bearer.done.secondExchange}`);
  check(
    bearer.toApi.some((r) => r.authorization?.startsWith('Bearer ')),
    'bearer mode sends the exchanged token',
  );
  console.log('  social | bearer mode: exchangeLoginCode gave a token that answered me, once: ok');
  console.log('apollo social login (Chromium, real OpenID Provider, cookie and bearer mode): ok');
} finally {
  await gatehouse.stop();
  provider.kill();
  app.close();
}
