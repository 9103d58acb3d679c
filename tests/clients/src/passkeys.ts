// Passkeys in Chromium: a page on http://localhost:<port> (WEBAUTHN_ORIGIN, and listed in
// CORS_ORIGINS) calls the browser's own navigator.credentials.create / get with gatehouse's
// options, answered by a CDP virtual authenticator (CTAP2, resident keys, user verification).
// Node drives gatehouse with a bearer token; the username-less sign-in runs in the page, with
// the session cookie.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

import { offlineBrowser } from './browser.js';
import { check } from './check.js';
import { startGatehouse } from './gatehouse.js';

// The page's part: base64url fields of the options become ArrayBuffers for the browser, and
// the browser's answer goes back as JSON with base64url fields, as webauthn-rs reads it.
const pageScript = `
const decode = (text) => {
  const base64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const binary = atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0)).buffer;
};
const encode = (buffer) =>
  btoa(String.fromCharCode(...new Uint8Array(buffer))).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');

window.createPasskey = async (options) => {
  const publicKey = structuredClone(options.publicKey);
  publicKey.challenge = decode(publicKey.challenge);
  publicKey.user.id = decode(publicKey.user.id);
  for (const c of publicKey.excludeCredentials ?? []) c.id = decode(c.id);
  const credential = await navigator.credentials.create({ publicKey });
  return {
    id: credential.id,
    rawId: encode(credential.rawId),
    type: credential.type,
    response: {
      attestationObject: encode(credential.response.attestationObject),
      clientDataJSON: encode(credential.response.clientDataJSON),
      transports: credential.response.getTransports(),
    },
    extensions: credential.getClientExtensionResults(),
  };
};

window.getPasskey = async (options) => {
  const publicKey = structuredClone(options.publicKey);
  publicKey.challenge = decode(publicKey.challenge);
  for (const c of publicKey.allowCredentials ?? []) c.id = decode(c.id);
  const credential = await navigator.credentials.get({ publicKey });
  const { authenticatorData, clientDataJSON, signature, userHandle } = credential.response;
  return {
    id: credential.id,
    rawId: encode(credential.rawId),
    type: credential.type,
    response: {
      authenticatorData: encode(authenticatorData),
      clientDataJSON: encode(clientDataJSON),
      signature: encode(signature),
      userHandle: userHandle ? encode(userHandle) : null,
    },
    extensions: credential.getClientExtensionResults(),
  };
};

// GraphQL from the page, with the cookie and no token.
window.graphql = async (api, query, variables) => {
  const response = await fetch(api, {
    method: 'POST',
    credentials: 'include',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  return response.json();
};
`;
const html = `<!doctype html><meta charset="utf-8"><title>passkeys</title><script>${pageScript}</script>`;

type Json = Record<string, unknown>;
interface Reply {
  data?: Record<string, any> | null;
  errors?: Array<{ message: string; extensions?: { code?: string; field?: string } }>;
}

declare global {
  interface Window {
    createPasskey(options: unknown): Promise<Json>;
    getPasskey(options: unknown): Promise<Json>;
    graphql(api: string, query: string, variables?: Json): Promise<Reply>;
  }
}

function code(reply: Reply): string | undefined {
  return reply.errors?.[0]?.extensions?.code;
}

const pages = createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/html' }).end(html);
});
await new Promise<void>((ok) => pages.listen(0, '127.0.0.1', ok));
const pagePort = (pages.address() as AddressInfo).port;
const pageOrigin = `http://localhost:${pagePort}`;

const gatehouse = await startGatehouse({
  CORS_ORIGINS: pageOrigin,
  WEBAUTHN_RP_ID: 'localhost',
  WEBAUTHN_ORIGIN: pageOrigin,
});
const api = `http://localhost:${gatehouse.port}/graphql`;
const offline = await offlineBrowser([`localhost:${pagePort}`, `localhost:${gatehouse.port}`]);

async function gql(query: string, variables: Json = {}, token?: string): Promise<Reply> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`${gatehouse.origin}/graphql`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ query, variables }),
  });
  return (await response.json()) as Reply;
}

async function data(query: string, variables: Json = {}, token?: string): Promise<Record<string, any>> {
  const reply = await gql(query, variables, token);
  check(!reply.errors && reply.data, `${query}: ${JSON.stringify(reply)}`);
  return reply.data;
}

const START_LOGIN = 'mutation($u: String) { startPasskeyLogin(username: $u) { challenge options } }';
const FINISH_LOGIN = `mutation($input: FinishPasskeyLoginInput!) {
  finishPasskeyLogin(input: $input) { token user { id } }
}`;

try {
  const page = await offline.context.newPage();
  await page.goto(pageOrigin);
  const cdp = await offline.context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
    },
  });
  const credentials = async () => (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials;

  // Sign up and register a passkey (a fresh session: just signed up).
  const username = `passkey_${Date.now().toString(36)}`;
  const signup = await data(
    'mutation($u: String!, $p: String!) { signup(input: {username: $u, password: $p}) { token user { id } } }',
    { u: username, p: 'correct horse battery staple' },
  );
  const token: string = signup.signup.token;
  const userId: string = signup.signup.user.id;
  const creation = (await data('mutation { startPasskeyRegistration }', {}, token)).startPasskeyRegistration;
  check(creation.publicKey.rp.id === 'localhost', `rp id: ${JSON.stringify(creation)}`);
  check(creation.publicKey.authenticatorSelection.userVerification === 'required', 'user verification required');
  const created = await page.evaluate((options) => window.createPasskey(options), creation);
  const registered = await data(
    'mutation($input: FinishPasskeyRegistrationInput!) { finishPasskeyRegistration(input: $input) { id name } }',
    { input: { name: 'virtual authenticator', credential: created } },
    token,
  );
  const passkeyId: string = registered.finishPasskeyRegistration.id;
  const mine = await data('{ me { passkeys { id name lastUsedAt } } }', {}, token);
  check(mine.me.passkeys.length === 1 && mine.me.passkeys[0].id === passkeyId, JSON.stringify(mine));
  check(mine.me.passkeys[0].lastUsedAt === null, 'not used yet');
  const [stored] = await credentials();
  check(stored?.isResidentCredential, 'the authenticator keeps a discoverable credential');
  console.log('  passkeys | registered in Chromium: ok');

  // Sign in by username: no password, a working token, the counter and lastUsedAt move on.
  const signInByName = async () => {
    const { startPasskeyLogin } = await data(START_LOGIN, { u: username });
    const answer = await page.evaluate((options) => window.getPasskey(options), startPasskeyLogin.options);
    return { answer, reply: await gql(FINISH_LOGIN, { input: { challenge: startPasskeyLogin.challenge, credential: answer } }) };
  };
  const first = await signInByName();
  check(!first.reply.errors, JSON.stringify(first.reply));
  const byName = first.reply.data?.finishPasskeyLogin;
  check(byName.user.id === userId, 'signed in as the user');
  const used = await data('{ me { id passkeys { lastUsedAt } } }', {}, byName.token);
  check(used.me.id === userId && used.me.passkeys[0].lastUsedAt !== null, JSON.stringify(used));
  const counterAfterFirst = (await credentials())[0]?.signCount ?? 0;
  check(counterAfterFirst > (stored?.signCount ?? 0), 'the authenticator counted the signature');
  console.log(`  passkeys | signed in by username, signature counter ${counterAfterFirst}: ok`);

  // An answer signed for one challenge does not open another.
  const { startPasskeyLogin: other } = await data(START_LOGIN, { u: username });
  const replay = await gql(FINISH_LOGIN, { input: { challenge: other.challenge, credential: first.answer } });
  check(code(replay) === 'UNAUTHENTICATED', `replayed answer: ${JSON.stringify(replay)}`);

  // Without a username: the authenticator picks the credential; the page finishes with its cookie.
  const discoverable = (await data(START_LOGIN, {})).startPasskeyLogin;
  check(discoverable.options.publicKey.allowCredentials.length === 0, 'no credentials offered');
  const picked = await page.evaluate((options) => window.getPasskey(options), discoverable.options);
  check(picked.response && (picked.response as Json).userHandle, 'the answer names its user');
  const inPage = await page.evaluate(
    ([url, query, input]) => window.graphql(url, query, { input }),
    [api, FINISH_LOGIN, { challenge: discoverable.challenge, credential: picked }] as const,
  );
  check(!inPage.errors && inPage.data?.finishPasskeyLogin.user.id === userId, JSON.stringify(inPage));
  const byCookie = await page.evaluate(([url]) => window.graphql(url, '{ me { id } }'), [api] as const);
  check(byCookie.data?.me?.id === userId, `the cookie signs the page in: ${JSON.stringify(byCookie)}`);
  console.log('  passkeys | signed in without a username, session cookie set: ok');

  // A clone of the credential whose counter is behind the server's is refused.
  const [current] = await credentials();
  check(current, 'the credential is there');
  await cdp.send('WebAuthn.removeCredential', { authenticatorId, credentialId: current.credentialId });
  await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: { ...current, signCount: 0 } });
  const cloned = await signInByName();
  check(code(cloned.reply) === 'UNAUTHENTICATED', `a counter gone back: ${JSON.stringify(cloned.reply)}`);
  // The same key with its counter ahead again is accepted: the counter was the reason.
  await cdp.send('WebAuthn.removeCredential', { authenticatorId, credentialId: current.credentialId });
  await cdp.send('WebAuthn.addCredential', {
    authenticatorId,
    credential: { ...current, signCount: current.signCount + 10 },
  });
  const restored = await signInByName();
  check(!restored.reply.errors, `the counter ahead again: ${JSON.stringify(restored.reply)}`);
  console.log('  passkeys | a signature counter gone back is refused: ok');

  // Removed, the passkey no longer signs in, though the authenticator still holds it.
  const removed = await data('mutation($id: UUID!) { removePasskey(id: $id) }', { id: passkeyId }, token);
  check(removed.removePasskey === true, 'removed');
  const afterRemoval = (await data(START_LOGIN, {})).startPasskeyLogin;
  const stale = await page.evaluate((options) => window.getPasskey(options), afterRemoval.options);
  const refused = await gql(FINISH_LOGIN, { input: { challenge: afterRemoval.challenge, credential: stale } });
  check(code(refused) === 'UNAUTHENTICATED', `a removed passkey: ${JSON.stringify(refused)}`);
  const named = (await data(START_LOGIN, { u: username })).startPasskeyLogin;
  const offered: Array<{ id: string }> = named.options.publicKey.allowCredentials;
  check(!offered.some((c) => c.id === created.rawId), 'the removed credential is no longer offered');
  if (offline.blocked.length > 0) throw new Error(`blocked requests: ${offline.blocked.join(' ')}`);
  console.log('passkeys (Chromium, virtual authenticator): ok');
} finally {
  await offline.close();
  await gatehouse.stop();
  pages.close();
}
