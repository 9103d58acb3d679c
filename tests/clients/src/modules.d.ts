// oidc-provider ships no types; the helper uses a handful of its calls.
declare module 'oidc-provider';
