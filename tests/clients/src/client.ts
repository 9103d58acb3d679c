// The Apollo Client setup a frontend uses, in its two modes. README "Use it from a frontend"
// copies this file.
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from '@apollo/client';
import { CombinedGraphQLErrors } from '@apollo/client/errors';
import { SetContextLink } from '@apollo/client/link/context';
import { ErrorLink } from '@apollo/client/link/error';

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

/** Bearer mode: the token from `signup`/`login` goes in `Authorization` on every request. */
export function bearerClient(uri: string, getToken: () => string | null, onErrorCode: OnErrorCode) {
  const auth = new SetContextLink((prevContext) => {
    const token = getToken();
    return token ? { headers: { ...prevContext.headers, authorization: `Bearer ${token}` } } : {};
  });
  return new ApolloClient({
    link: ApolloLink.from([errorLink(onErrorCode), auth, new HttpLink({ uri })]),
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
