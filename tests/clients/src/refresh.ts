// Bearer mode with short tokens (ACCESS_TOKEN_TTL, API.md §8): client.ts's refresh link renews an
// expired token with refreshSession, sent without the expired token, and retries the operation
// once; operations refused together share one refresh; a refresh that fails surfaces the
// operation's own UNAUTHENTICATED, with one attempt and no loop.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';

import { CombinedGraphQLErrors } from '@apollo/client/errors';

import { bearerClient } from './client.js';
import { startGatehouse } from './gatehouse.js';
import { CountSessionsDocument, MeDocument, SignupDocument } from './generated/graphql.js';

const PASSWORD = 'correct horse battery staple';

/** One request as it went over the wire. */
interface Exchange {
  operation: string;
  authorization: string | null;
  status: number;
}

// HttpLink calls the global fetch current at each request.
const exchanges: Exchange[] = [];
const realFetch = globalThis.fetch;
globalThis.fetch = async (input, init) => {
  const { operationName } = JSON.parse(String(init?.body));
  const response = await realFetch(input, init);
  exchanges.push({
    operation: String(operationName),
    authorization: new Headers(init?.headers).get('authorization'),
    status: response.status,
  });
  return response;
};
const since = (mark: number) => exchanges.slice(mark).map((e) => `${e.operation} ${e.status}`);

const gatehouse = await startGatehouse({ ACCESS_TOKEN_TTL: '2' });
try {
  let token: string | null = null;
  let refreshToken: string | null = null;
  let expiresAt = 0;
  const codes: Array<[string, string]> = [];
  const client = bearerClient(
    `${gatehouse.origin}/graphql`,
    () => token,
    (code, op) => codes.push([code, op]),
    {
      getRefreshToken: () => refreshToken,
      setTokens: (t, r) => {
        token = t;
        refreshToken = r;
        // A new token lives ACCESS_TOKEN_TTL seconds from now.
        expiresAt = Date.now() + 2_000;
      },
    },
  );
  // `exp` is in whole seconds and has no leeway: one second past it the token is refused.
  const untilExpired = () => sleep(Math.max(0, expiresAt - Date.now()) + 1_100);

  const username = `refresh_${Date.now().toString(36)}${Math.floor(Math.random() * 1e6)}`;
  const signup = await client.mutate({ mutation: SignupDocument, variables: { input: { username, password: PASSWORD } } });
  const payload = signup.data?.signup;
  assert.ok(payload?.refreshToken, 'with ACCESS_TOKEN_TTL, signup carries a refreshToken');
  token = payload.token;
  refreshToken = payload.refreshToken;
  expiresAt = Date.parse(payload.expiresAt);
  assert.ok(expiresAt - Date.now() <= 2_000, `expiresAt is the short token's: ${payload.expiresAt}`);
  const first = token;
  const me = await client.query({ query: MeDocument, fetchPolicy: 'network-only' });
  assert.equal(me.data?.me?.id, payload.user.id);

  // One expired token: a 401, one refresh without Authorization, one retry with the new token.
  await untilExpired();
  let mark = exchanges.length;
  const renewed = await client.query({ query: MeDocument, fetchPolicy: 'network-only' });
  assert.equal(renewed.data?.me?.id, payload.user.id, 'me after expiry answers through a renewal');
  assert.deepEqual(since(mark), ['Me 401', 'RefreshSession 200', 'Me 200']);
  const [refused, refresh, retried] = exchanges.slice(mark);
  assert.equal(refused?.authorization, `Bearer ${first}`);
  assert.equal(refresh?.authorization, null, 'refreshSession goes without the expired token');
  assert.notEqual(token, first, 'the client holds a new token');
  assert.equal(retried?.authorization, `Bearer ${token}`);
  assert.notEqual(refreshToken, payload.refreshToken, 'and a new refresh token');
  assert.deepEqual(codes, [], 'a renewal the error link never sees');

  // Two operations refused together share one refresh: the refresh token is spent once.
  await untilExpired();
  mark = exchanges.length;
  const [a, b] = await Promise.all([
    client.query({ query: MeDocument, fetchPolicy: 'network-only' }),
    client.query({ query: CountSessionsDocument, fetchPolicy: 'network-only' }),
  ]);
  assert.equal(a.data?.me?.id, payload.user.id);
  assert.equal(b.data?.countSessions, 1);
  const racing = since(mark);
  assert.equal(racing.filter((e) => e.startsWith('RefreshSession')).length, 1, `one refresh: ${racing}`);
  assert.deepEqual(
    [...racing].sort(),
    ['CountSessions 200', 'CountSessions 401', 'Me 200', 'Me 401', 'RefreshSession 200'],
  );
  assert.deepEqual(codes, []);

  // A refresh that fails: the operation's own UNAUTHENTICATED, after one attempt and no retry.
  await untilExpired();
  refreshToken = 'not-a-refresh-token';
  mark = exchanges.length;
  const failed = await client.query({ query: MeDocument, fetchPolicy: 'network-only', errorPolicy: 'all' });
  assert.ok(CombinedGraphQLErrors.is(failed.error), `a GraphQL error: ${String(failed.error)}`);
  assert.deepEqual(failed.error.errors.map((e) => e.extensions?.code), ['UNAUTHENTICATED']);
  assert.deepEqual(since(mark), ['Me 401', 'RefreshSession 200']);
  assert.deepEqual(codes, [['UNAUTHENTICATED', 'Me']], 'the error link sees the operation refused');

  console.log('apollo refresh link: ok');
} finally {
  globalThis.fetch = realFetch;
  await gatehouse.stop();
}
