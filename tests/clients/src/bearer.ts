// Apollo Client in Node, bearer mode, against a freshly started release gatehouse.
import { bearerClient } from './client.js';
import { runFlow } from './flow.js';
import { startGatehouse } from './gatehouse.js';

const gatehouse = await startGatehouse();
try {
  let token: string | null = null;
  const codes: Array<[string, string]> = [];
  const client = bearerClient(`${gatehouse.origin}/graphql`, () => token, (code, op) => codes.push([code, op]));
  await runFlow({
    mode: 'bearer',
    client,
    setToken: (t) => (token = t),
    errorCodes: () => codes,
    log: (line) => console.log(`  bearer | ${line}`),
  });
  console.log('apollo bearer mode: ok');
} finally {
  await gatehouse.stop();
}
