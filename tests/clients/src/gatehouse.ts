// Starts the release build of gatehouse on a free port over a fresh SQLite file, and stops it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const BINARY = process.env.GATEHOUSE_BIN ?? resolve(import.meta.dirname, '../../../target/release/gatehouse');

export interface Gatehouse {
  /** e.g. http://127.0.0.1:40123 */
  origin: string;
  port: number;
  stop(): Promise<void>;
}

export async function startGatehouse(env: Record<string, string> = {}): Promise<Gatehouse> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-clients-'));
  const child: ChildProcess = spawn(BINARY, [], {
    env: {
      ...process.env,
      BIND: '127.0.0.1:0',
      DATABASE_URL: `sqlite://${dir}/gatehouse.db?mode=rwc`,
      // Cheap hashing: these tests are about clients, not password cost.
      ARGON2_MEMORY_KIB: '8192',
      ARGON2_ITERATIONS: '1',
      RUST_LOG: 'info',
      NO_COLOR: '1',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const address = await new Promise<string>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`gatehouse did not start:\n${log}`)), 30_000);
    const read = (chunk: Buffer) => {
      log += chunk.toString();
      const plain = log.replace(/\x1b\[[0-9;]*m/g, '');
      const found = /address=(127\.0\.0\.1:\d+)/.exec(plain);
      if (found?.[1]) {
        clearTimeout(timer);
        ok(found[1]);
      }
    };
    child.stdout?.on('data', read);
    child.stderr?.on('data', read);
    child.on('exit', (code) => fail(new Error(`gatehouse exited with ${code}:\n${log}`)));
  });
  const port = Number(address.split(':')[1]);
  return {
    origin: `http://${address}`,
    port,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((ok) => child.once('exit', ok));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
