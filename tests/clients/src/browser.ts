// Debian's Chromium, headless, driven by playwright-core; requests to any host but the allowed
// ones are aborted and reported, so a page that reaches for a CDN fails the test.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';

import { chromium, type Browser, type BrowserContext } from 'playwright-core';

const FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface Offline {
  browser: Browser;
  context: BrowserContext;
  /** URLs the page tried to load from other hosts. */
  blocked: string[];
  close(): Promise<void>;
}

/** A browser (with a fresh profile of its own) whose pages may only reach `allowedHosts` (host:port). */
export async function offlineBrowser(allowedHosts: string[]): Promise<Offline> {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: FLAGS,
  });
  const context = await browser.newContext({ viewport: { width: 1400, height: 800 } });
  const blocked: string[] = [];
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.protocol === 'data:' || allowedHosts.includes(url.host)) return route.continue();
    blocked.push(url.href);
    return route.abort();
  });
  return { browser, context, blocked, close: () => browser.close() };
}

export interface AppPage {
  /** e.g. http://localhost:40123 (another origin than gatehouse's, the same site) */
  origin: string;
  /** host:port, for `offlineBrowser` */
  host: string;
  close(): void;
}

/** Serves an application page on http://localhost:<free port>: `dist/<bundle>` under one script tag. */
export async function serveBundle(bundle: string, title: string): Promise<AppPage> {
  const script = readFileSync(resolve(import.meta.dirname, '../dist', bundle));
  const html = `<!doctype html><meta charset="utf-8"><title>${title}</title><script src="/${bundle}"></script>`;
  const server = createServer((req, res) => {
    if (req.url?.startsWith(`/${bundle}`)) {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(script);
    } else {
      res.writeHead(200, { 'content-type': 'text/html' }).end(html);
    }
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const host = `localhost:${(server.address() as AddressInfo).port}`;
  return { origin: `http://${host}`, host, close: () => server.close() };
}
