// Apollo Client in Chromium, cookie mode: a page served from http://localhost:<port> (listed in
// CORS_ORIGINS) calls gatehouse on http://localhost:<other port> with credentials: 'include'.
import { offlineBrowser, serveBundle } from './browser.js';
import { startGatehouse } from './gatehouse.js';

const app = await serveBundle('cookie-page.js', 'cookie mode');
const pageOrigin = app.origin;

// COOKIE_SECURE keeps its default (true): browsers accept Secure cookies from http://localhost.
const gatehouse = await startGatehouse({ CORS_ORIGINS: pageOrigin });
const apiHost = `localhost:${gatehouse.port}`;
const offline = await offlineBrowser([app.host, apiHost]);
try {
  const page = await offline.context.newPage();
  const authorizationSent: string[] = [];
  page.on('request', (request) => {
    const authorization = request.headers()['authorization'];
    if (authorization) authorizationSent.push(authorization);
  });
  await page.goto(`${pageOrigin}/?api=${encodeURIComponent(`http://${apiHost}/graphql`)}`);
  await page.waitForFunction(() => window.flowResult !== undefined, undefined, { timeout: 30_000 });
  const result = await page.evaluate(() => window.flowResult);
  for (const line of result?.log ?? []) console.log(`  cookie | ${line}`);
  if (!result?.ok) throw new Error(`cookie mode failed in the browser: ${result?.error}`);
  if (authorizationSent.length > 0) throw new Error('the page sent an Authorization header');
  if (offline.blocked.length > 0) throw new Error(`blocked requests: ${offline.blocked.join(' ')}`);
  console.log('apollo cookie mode (Chromium, cross-origin with credentials): ok');
} finally {
  await offline.close();
  await gatehouse.stop();
  app.close();
}
