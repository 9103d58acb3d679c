// Debian's Chromium, headless, driven by playwright-core; requests to any host but the allowed
// ones are aborted and reported, so a page that reaches for a CDN fails the test.
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
