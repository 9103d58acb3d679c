// Apollo Client's persisted-queries link against gatehouse (API.md §2): the first use of a
// document sends only its hash, gets PERSISTED_QUERY_NOT_FOUND and sends the text; later uses
// send the hash alone, over GET, and get the same answers.
import { createHash } from 'node:crypto';

import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from '@apollo/client';
import { SetContextLink } from '@apollo/client/link/context';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';

import { check } from './check.js';
import { startGatehouse } from './gatehouse.js';
import { MeDocument, SignupDocument } from './generated/graphql.js';

const PASSWORD = 'correct horse battery staple';

/** What went over the wire: method, whether the text was sent, and the error codes that came back. */
interface Exchange {
  method: string;
  sentText: boolean;
  codes: string[];
}

const gatehouse = await startGatehouse();
try {
  const exchanges: Exchange[] = [];
  const recordingFetch: typeof fetch = async (input, init) => {
    const method = init?.method ?? 'GET';
    const url = new URL(String(input));
    const sentText = method === 'POST' ? 'query' in JSON.parse(String(init?.body)) : url.searchParams.has('query');
    const response = await fetch(input, init);
    const body = await response.clone().json();
    const codes = (body.errors ?? []).map((e: { extensions?: { code?: string } }) => String(e.extensions?.code));
    exchanges.push({ method, sentText, codes });
    return response;
  };

  let token: string | null = null;
  const auth = new SetContextLink((prevContext) =>
    token ? { headers: { ...prevContext.headers, authorization: `Bearer ${token}` } } : {},
  );
  const persisted = new PersistedQueryLink({
    sha256: (text: string) => createHash('sha256').update(text).digest('hex'),
    useGETForHashedQueries: true,
  });
  const client = new ApolloClient({
    link: ApolloLink.from([auth, persisted, new HttpLink({ uri: `${gatehouse.origin}/graphql`, fetch: recordingFetch })]),
    cache: new InMemoryCache(),
  });

  const username = `persisted_${Date.now().toString(36)}`;
  const signup = await client.mutate({ mutation: SignupDocument, variables: { input: { username, password: PASSWORD } } });
  token = signup.data?.signup.token ?? null;
  check(token, 'signed up through the persisted-queries link');

  exchanges.length = 0;
  const first = await client.query({ query: MeDocument, fetchPolicy: 'network-only' });
  check(first.data?.me?.username === username, `me the first time: ${JSON.stringify(first.data)}`);
  const [miss, full] = exchanges;
  check(exchanges.length === 2 && miss && full, `a hash, then the text: ${JSON.stringify(exchanges)}`);
  check(!miss.sentText && miss.codes.includes('PERSISTED_QUERY_NOT_FOUND'), `the hash alone is unknown: ${JSON.stringify(miss)}`);
  check(full.sentText && full.codes.length === 0, `the text registers it: ${JSON.stringify(full)}`);

  exchanges.length = 0;
  const second = await client.query({ query: MeDocument, fetchPolicy: 'network-only' });
  check(second.data?.me?.username === username, `me by hash: ${JSON.stringify(second.data)}`);
  const [byHash] = exchanges;
  check(
    exchanges.length === 1 && byHash?.method === 'GET' && !byHash.sentText && byHash.codes.length === 0,
    `the hash alone, over GET: ${JSON.stringify(exchanges)}`,
  );
  console.log('apollo persisted queries: ok');
} finally {
  await gatehouse.stop();
}
