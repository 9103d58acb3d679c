// GraphiQL in headless Chromium, with every other host unreachable: the page served by gatehouse
// loads, a signup mutation typed into the editor runs, and the result pane shows a token.
// The screenshot lands in target/graphiql.png.
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';

import { offlineBrowser } from './browser.js';
import { startGatehouse } from './gatehouse.js';

const SCREENSHOT = resolve(import.meta.dirname, '../../../target/graphiql.png');
const username = `graphiql_${Date.now().toString(36)}`;
const MUTATION = `mutation {
  signup(input: {username: "${username}", password: "correct horse battery staple"}) {
    token
    user { username roles }
  }
}`;

const gatehouse = await startGatehouse();
const offline = await offlineBrowser([`127.0.0.1:${gatehouse.port}`]);
try {
  const page = await offline.context.newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await page.goto(`${gatehouse.origin}/graphql`);
  const editor = page.locator('.graphiql-query-editor .CodeMirror');
  await editor.waitFor({ timeout: 30_000 });
  // The schema arrives by introspection: the docs explorer and completion need it.
  await page.locator('.graphiql-container').waitFor();

  // Replace the default query with the mutation, as a user pasting it would.
  await editor.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(MUTATION);
  await page.locator('.graphiql-execute-button').click();

  const result = page.locator('.result-window');
  await result.getByText('"token"').waitFor({ timeout: 30_000 });
  const text = (await result.innerText()).replace(/\s+/g, ' ');
  const token = /"token": "([\w-]+\.[\w-]+\.[\w-]+)"/.exec(text)?.[1];
  if (!token) throw new Error(`no token in the result pane: ${text.slice(0, 500)}`);
  if (!text.includes(username)) throw new Error('the result pane lacks the new username');

  mkdirSync(resolve(SCREENSHOT, '..'), { recursive: true });
  await page.screenshot({ path: SCREENSHOT });
  if (offline.blocked.length > 0) throw new Error(`the page reached for other hosts: ${offline.blocked.join(' ')}`);
  if (pageErrors.length > 0) throw new Error(`page errors: ${pageErrors.join('\n')}`);
  console.log(`  graphiql | signup ${username}: token ${token.slice(0, 16)}...; screenshot ${SCREENSHOT}`);
  console.log('graphiql (Chromium, offline): ok');
} finally {
  await offline.close();
  await gatehouse.stop();
}
