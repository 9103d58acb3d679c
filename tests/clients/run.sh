#!/usr/bin/env bash
# The client tests: GraphQL Code Generator and tsc over the committed schema.graphql, Apollo
# Client in bearer mode (Node, also renewing short tokens) and cookie mode (Chromium,
# cross-origin), GraphiQL in Chromium with no other host reachable, passkeys in Chromium with
# a virtual authenticator, and social login in Chromium through a real OpenID Provider in
# cookie and bearer mode. Each program starts its own gatehouse (the release build, or
# GATEHOUSE_BIN).
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

# GATEHOUSE_BIN picks a binary already built (.ci/run passes the debug build of its tests).
if [ -z "${GATEHOUSE_BIN:-}" ]; then
  (cd "$root" && cargo build --release --quiet)
  export GATEHOUSE_BIN="$CARGO_TARGET_DIR/release/gatehouse"
fi

if [ ! -x /usr/bin/chromium ]; then
  timeout 300 apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq chromium >/dev/null
fi

npm ci --no-audit --no-fund --loglevel=error
npm run -s codegen
npm run -s typecheck
npm run -s bundle

npx tsx src/bearer.ts
npx tsx src/refresh.ts
npx tsx --conditions=development src/partial.ts
npx tsx src/persisted.ts
npx tsx src/cookie.ts
npx tsx src/graphiql.ts
npx tsx src/passkeys.ts
npx tsx src/social.ts
