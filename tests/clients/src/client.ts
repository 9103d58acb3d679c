// The Apollo Client setup a frontend uses, in its two modes. README "Use it from a frontend"
// copies this file.
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from '@apollo/client';
import { CombinedGraphQLErrors } from '@apollo/client/errors';
import { SetContextLink } from '@apollo/client/link/context';
import { ErrorLink } from '@apollo/client/link/error';
import { firstValueFrom, from, mergeMap, of, throwError } from 'rxjs';

import { RefreshSessionDocument, type RefreshSessionMutation } from './generated/graphql.js';

/** Called with the `extensions.code` of every GraphQL error (e.g. to sign out on UNAUTHENTICATED). */
export type OnErrorCode = (code: string, operationName: string) => void;

function errorLink(onErrorCode: OnErrorCode): ErrorLink {
  return new ErrorLink(({ error, operation }) => {
    if (CombinedGraphQLErrors.is(error)) {
      for (const e of error.errors) {
        onErrorCode(String(e.extensions?.code ?? 'UNKNOWN'), operation.operationName ?? '');
      }
    }
  });
}

/** With ACCESS_TOKEN_TTL: where the latest `refreshToken` is kept and a renewed pair goes. */
export interface Renewal {
  getRefreshToken(): string | null;
  setTokens(token: string, refreshToken: string | null): void;
}

/**
 * Renews an expired token with `refreshSession` and retries the operation once. A request whose
 * token fails is refused as a whole (HTTP 401), so `refreshSession` goes straight to `http`,
 * without `Authorization`. A refresh token works once: operations refused together share one
 * refresh. If it fails, the operation's own error goes on up.
 */
function refreshLink(http: ApolloLink, getToken: () => string | null, renewal: Renewal): ErrorLink {
  let renewing: Promise<boolean> | null = null;
  const renew = async (client: ApolloClient): Promise<boolean> => {
    const refreshToken = renewal.getRefreshToken();
    if (!refreshToken) return false;
    const request = { query: RefreshSessionDocument, variables: { refreshToken } };
    const result = await firstValueFrom(ApolloLink.execute(http, request, { client })).catch(() => null);
    const pair = (result?.data as RefreshSessionMutation | null | undefined)?.refreshSession;
    if (!pair) return false;
    renewal.setTokens(pair.token, pair.refreshToken ?? null);
    return true;
  };
  return new ErrorLink(({ error, result, operation, forward }) => {
    const { response, headers } = operation.getContext();
    const sent: string | undefined = headers?.authorization;
    if (response?.status !== 401 || !sent) return;
    const token = getToken();
    // Renewed by another operation since this one was sent: only retry.
    const renewed =
      token && sent !== `Bearer ${token}`
        ? Promise.resolve(true)
        : (renewing ??= renew(operation.client).finally(() => (renewing = null)));
    return from(renewed).pipe(
      mergeMap((ok) => (ok ? forward(operation) : result ? of(result) : throwError(() => error))),
    );
  });
}

/**
 * Bearer mode: the token from `signup`/`login` goes in `Authorization` on every request. With
 * `renewal`, an expired token is renewed and the operation retried once.
 */
export function bearerClient(
  uri: string,
  getToken: () => string | null,
  onErrorCode: OnErrorCode,
  renewal?: Renewal,
) {
  const auth = new SetContextLink((prevContext) => {
    const token = getToken();
    return token ? { headers: { ...prevContext.headers, authorization: `Bearer ${token}` } } : {};
  });
  const http = new HttpLink({ uri });
  const refresh = renewal ? [refreshLink(http, getToken, renewal)] : [];
  return new ApolloClient({
    link: ApolloLink.from([errorLink(onErrorCode), ...refresh, auth, http]),
    cache: new InMemoryCache(),
  });
}

/**
 * Cookie mode: gatehouse sets an HttpOnly session cookie on `signup`/`login`; the browser sends
 * it back. Cross-origin, the page's origin must be listed in CORS_ORIGINS.
 */
export function cookieClient(uri: string, onErrorCode: OnErrorCode) {
  return new ApolloClient({
    link: ApolloLink.from([errorLink(onErrorCode), new HttpLink({ uri, credentials: 'include' })]),
    cache: new InMemoryCache(),
  });
}
