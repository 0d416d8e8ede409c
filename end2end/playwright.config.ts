import { defineConfig } from '@playwright/test';
import * as os from 'os';
import * as path from 'path';
import * as fs from 'fs';

// The server under test: the debug binary scripts/test.sh built, on a fresh SQLite demo in a temp dir.
const bin = process.env.CMDOP_INSPECTOR_BIN ?? path.resolve(__dirname, '../target/debug/cmdop-inspector');
const port = Number(process.env.CMDOP_E2E_PORT ?? 3917);
// Made once by the runner; its workers inherit it through the environment (tests record into this server).
const dataDir = process.env.CMDOP_E2E_DATA_DIR ?? fs.mkdtempSync(path.join(os.tmpdir(), 'cmdop-e2e-'));
process.env.CMDOP_E2E_DATA_DIR = dataDir;
process.env.CMDOP_INSPECTOR_BIN = bin;
process.env.CMDOP_E2E_PORT = String(port);

export default defineConfig({
  testDir: './tests',
  timeout: 30_000,
  retries: 0,
  workers: 1,
  reporter: [['list']],
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    },
  },
  webServer: {
    command: `${bin} serve --demo --listen 127.0.0.1:${port} --data-dir ${dataDir}`,
    url: `http://127.0.0.1:${port}/healthz`,
    timeout: 60_000,
    reuseExistingServer: false,
    stdout: 'pipe',
    stderr: 'pipe',
  },
});
