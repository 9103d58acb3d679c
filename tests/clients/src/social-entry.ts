// Bundled for the social login page (src/social.ts): the page an application puts behind its
// "Sign in with ..." button. It links to gatehouse's start route with itself as `return_to`,
// and on the way back uses the session in cookie mode, or turns `?login_code=` into a token
// with exchangeLoginCode in bearer mode.
import { CombinedGraphQLErrors } from '@apollo/client/errors';

import { bearerClient, cookieClient } from './client.js';
import { ExchangeLoginCodeDocument, MeDocument, OidcProvidersDocument } from './generated/graphql.js';

export interface SocialResult {
  stage: 'ready' | 'done' | 'failed';
  mode?: string;
  user?: { id: string; username: string; roles: string[] };
  provider?: string;
  /** Bearer mode: the code of a second exchange of the same login code. */
  secondExchange?: string;
  error?: string;
}

declare global {
  interface Window {
    socialResult?: SocialResult;
  }
}

const params = new URLSearchParams(window.location.search);
const api = params.get('api') ?? '';
const mode = params.get('mode') ?? 'cookie';
const loginCode = params.get('login_code');
const returned = params.get('error');
const codes: Array<[string, string]> = [];
const onErrorCode = (code: string, op: string) => codes.push([code, op]);

async function run(): Promise<SocialResult> {
  if (returned) return { stage: 'failed', mode, error: `came back with ?error=${returned}` };
  if (!loginCode) {
    // The login buttons: one per provider gatehouse offers.
    const anonymous = cookieClient(api, onErrorCode);
    const { data } = await anonymous.query({ query: OidcProvidersDocument });
    for (const provider of data?.oidcProviders ?? []) {
      const start = new URL(`/auth/oidc/${provider}/start`, api);
      start.searchParams.set('return_to', window.location.href);
      const link = document.createElement('a');
      link.id = `login-${provider}`;
      link.href = start.href;
      link.textContent = `Sign in with ${provider}`;
      document.body.append(link);
    }
    return { stage: 'ready', mode, provider: data?.oidcProviders[0] };
  }
  if (mode === 'cookie') {
    // The callback set the session cookie: the page handles no token at all.
    const { data } = await cookieClient(api, onErrorCode).query({ query: MeDocument });
    return { stage: 'done', mode, user: data?.me ?? undefined };
  }
  let token: string | null = null;
  const client = bearerClient(api, () => token, onErrorCode);
  const exchanged = await client.mutate({ mutation: ExchangeLoginCodeDocument, variables: { code: loginCode } });
  token = exchanged.data?.exchangeLoginCode.token ?? null;
  const identity = exchanged.data?.exchangeLoginCode.user.identities?.[0];
  const { data } = await client.query({ query: MeDocument, fetchPolicy: 'network-only' });
  // A login code works once.
  let secondExchange = 'accepted';
  try {
    await client.mutate({ mutation: ExchangeLoginCodeDocument, variables: { code: loginCode } });
  } catch (e) {
    secondExchange = CombinedGraphQLErrors.is(e) ? String(e.errors[0]?.extensions?.code) : String(e);
  }
  return { stage: 'done', mode, user: data?.me ?? undefined, provider: identity?.provider, secondExchange };
}

run().then(
  (result) => (window.socialResult = result),
  (e: unknown) => (window.socialResult = { stage: 'failed', mode, error: String(e instanceof Error ? e.stack : e) }),
);
