// Bundled for the cookie-mode page: the same flow as in Node, run by Chromium from another
// origin, with the session in gatehouse's HttpOnly cookie and no token handled by the page.
import { cookieClient } from './client.js';
import { runFlow } from './flow.js';

declare global {
  interface Window {
    flowResult?: { ok: boolean; log: string[]; error?: string };
  }
}

const api = new URLSearchParams(window.location.search).get('api') ?? '';
const log: string[] = [];
const codes: Array<[string, string]> = [];
const client = cookieClient(api, (code, op) => codes.push([code, op]));
runFlow({
  mode: 'cookie',
  client,
  setToken: () => {},
  errorCodes: () => codes,
  log: (line) => log.push(line),
}).then(
  () => (window.flowResult = { ok: true, log }),
  (e: unknown) => (window.flowResult = { ok: false, log, error: String(e instanceof Error ? e.stack : e) }),
);
