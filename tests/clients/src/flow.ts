// The end-to-end story both modes tell through Apollo Client: sign up, log in, read, create and
// page through sites, log out, and see the next request refused. Runs in Node and in a browser.
import type { ApolloClient } from '@apollo/client';
import { CombinedGraphQLErrors } from '@apollo/client/errors';

import { check } from './check.js';
import {
  CountSessionsDocument,
  CreateSiteDocument,
  LoginDocument,
  LogoutDocument,
  MeDocument,
  SignupDocument,
  SitesDocument,
} from './generated/graphql.js';

export type Mode = 'bearer' | 'cookie';

export interface FlowHooks {
  mode: Mode;
  client: ApolloClient;
  /** Bearer mode: where the client reads its token from. */
  setToken(token: string | null): void;
  /** The codes the client's error link has seen so far, with their operation names. */
  errorCodes(): Array<[string, string]>;
  log(line: string): void;
}

const PASSWORD = 'correct horse battery staple';

function codesOf(error: unknown): string[] {
  return CombinedGraphQLErrors.is(error) ? error.errors.map((e) => String(e.extensions?.code)) : [];
}

export async function runFlow({ mode, client, setToken, errorCodes, log }: FlowHooks): Promise<void> {
  const username = `apollo_${mode}_${Date.now().toString(36)}${Math.floor(Math.random() * 1e6)}`;

  const signup = await client.mutate({ mutation: SignupDocument, variables: { input: { username, password: PASSWORD } } });
  const signedUp = signup.data?.signup;
  check(signedUp && signedUp.token.split('.').length === 3, 'signup returns a JWT');
  check(signedUp.user.roles.includes('user'), 'a new account has role user');
  check(signedUp.session.current, 'the new session is current');
  check(signedUp.user.__typename === 'User', 'Apollo asked for __typename and got it');
  log(`signup ${username}: token ${signedUp.token.slice(0, 16)}..., expires ${signedUp.expiresAt}`);

  const login = await client.mutate({ mutation: LoginDocument, variables: { input: { username, password: PASSWORD } } });
  const token = login.data?.login.token;
  check(token && token !== signedUp.token, 'login opens another session');
  if (mode === 'bearer') setToken(token);
  log('login: second session opened');

  const me = await client.query({ query: MeDocument, fetchPolicy: 'network-only' });
  check(me.data?.me?.username === username, `me is ${username}`);
  check(me.data.me.id === signedUp.user.id, 'me has the id signup returned');
  log(`me: ${me.data.me.username} (${me.data.me.id}), roles ${me.data.me.roles.join(',')}`);

  const count = await client.query({ query: CountSessionsDocument, fetchPolicy: 'network-only' });
  check(count.data?.countSessions === 2, `2 live sessions, got ${count.data?.countSessions}`);
  log('countSessions: 2');

  const created: string[] = [];
  for (const name of ['alpha', 'beta', 'gamma']) {
    const site = await client.mutate({ mutation: CreateSiteDocument, variables: { input: { name } } });
    const createdSite = site.data?.createSite;
    check(createdSite && createdSite.myRoles.includes('ADMIN'), 'the creator is the site admin');
    created.push(createdSite.id);
  }
  log(`createSite: ${created.length} sites`);

  const first = await client.query({ query: SitesDocument, variables: { first: 2 }, fetchPolicy: 'network-only' });
  const page1 = first.data?.sites;
  check(page1 && page1.edges.length === 2 && page1.totalCount === 3, 'first page: 2 of 3 sites');
  check(page1.pageInfo.hasNextPage && page1.pageInfo.endCursor, 'first page says another follows');
  const second = await client.query({
    query: SitesDocument,
    variables: { first: 2, after: page1.pageInfo.endCursor },
    fetchPolicy: 'network-only',
  });
  const page2 = second.data?.sites;
  check(page2 && page2.edges.length === 1 && !page2.pageInfo.hasNextPage, 'second page: the last site');
  const seen = [...page1.edges, ...page2.edges].map((e) => e.node.id);
  check(new Set(seen).size === 3 && created.every((id) => seen.includes(id)), 'the pages hold every site once');
  // Cursors are stable: asking again from the same cursor gives the same page.
  const again = await client.query({
    query: SitesDocument,
    variables: { first: 2, after: page1.pageInfo.endCursor },
    fetchPolicy: 'network-only',
  });
  check(again.data?.sites.edges[0]?.cursor === page2.edges[0]?.cursor, 'the same cursor gives the same page');
  check(seen.join(' ') === created.join(' '), 'sites come oldest first');
  log(`sites: 2 pages of first: 2 joined by endCursor hold the ${seen.length} sites, oldest first`);

  const logout = await client.mutate({ mutation: LogoutDocument });
  check(logout.data?.logout === true, 'logout answers true');
  log('logout: true');

  if (mode === 'bearer') {
    // The token now names a closed session: HTTP 401, UNAUTHENTICATED, never anonymous.
    const after = await client.query({ query: MeDocument, fetchPolicy: 'network-only', errorPolicy: 'all' });
    check(codesOf(after.error).includes('UNAUTHENTICATED'), `me after logout: ${String(after.error)}`);
    check(
      errorCodes().some(([code, op]) => code === 'UNAUTHENTICATED' && op === 'Me'),
      'the error link saw UNAUTHENTICATED for Me',
    );
    log('me after logout: UNAUTHENTICATED (error link and result.error)');
  } else {
    // logout cleared the cookie: the browser now calls as anonymous.
    const after = await client.query({ query: MeDocument, fetchPolicy: 'network-only' });
    check(after.data?.me === null, 'me after logout is null: the cookie is gone');
    const count = await client.query({ query: CountSessionsDocument, fetchPolicy: 'network-only', errorPolicy: 'all' });
    check(codesOf(count.error).includes('UNAUTHENTICATED'), `countSessions after logout: ${String(count.error)}`);
    check(
      errorCodes().some(([code, op]) => code === 'UNAUTHENTICATED' && op === 'CountSessions'),
      'the error link saw UNAUTHENTICATED for CountSessions',
    );
    log('me after logout: null; countSessions: UNAUTHENTICATED (error link and result.error)');
  }
}
