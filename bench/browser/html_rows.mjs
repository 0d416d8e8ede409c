#!/usr/bin/env node
// The browser's share of "tail visible": the session page's server-rendered HTML, fetched once from the running
// inspector, served from a static local server (no server time) with fewer or more snapshot rows, the site's
// JS/WASM left out (no hydration). Times from navigation start until the marker row is fully visible
// (same probe as tail_visible.mjs), for each number of rows.
//
//   node html_rows.mjs --base URL --session UUID --marker TEXT [--runs 10] [--viewport 1920x1080]
//        [--email demo@cmdop.local --password cmdop-demo] [--chromium /usr/bin/chromium]
import { createRequire } from 'node:module';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';
import { probe } from './probe.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.resolve(here, '../../end2end/package.json'));
const { chromium } = require('@playwright/test');

const args = { base: null, session: null, marker: null, runs: 10, viewport: '1920x1080', email: 'demo@cmdop.local',
  password: 'cmdop-demo', chromium: process.env.CHROMIUM ?? '/usr/bin/chromium' };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in args)) throw new Error(`unknown option ${argv[i]}`);
    const v = argv[++i];
    args[key] = typeof args[key] === 'number' ? Number(v) : v;
  }
  if (!args.base || !args.session || !args.marker) {
    console.error('usage: html_rows.mjs --base URL --session UUID --marker TEXT [--runs N]');
    process.exit(2);
  }
}
const [vw, vh] = args.viewport.split('x').map(Number);

// ---- the page as the server renders it ----
const login = await fetch(`${args.base}/api/v1/auth/login`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ email: args.email, password: args.password }),
});
if (!login.ok) throw new Error(`login: ${login.status}`);
const cookie = login.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
const html = await (await fetch(`${args.base}/sessions/${args.session}`, { headers: { cookie } })).text();
const css = await (await fetch(`${args.base}/pkg/cmdop-inspector.css`)).text();

const HIST = '<div class="hist">';
const SCREEN = '</div><div class="screen">';
const BLK = '<div class="blk">';
const h0 = html.indexOf(HIST);
const h1 = html.indexOf(SCREEN, h0);
if (h0 < 0 || h1 < 0) throw new Error('no transcript markup in the page');
const blocks = html.slice(h0 + HIST.length, h1).split(BLK).slice(1).map((b) => BLK + b);
const rowsIn = (s) => s.split('<div class="r').length - 1;
const screenRows = rowsIn(html.slice(h1, html.indexOf('</main>', h1)));
function variant(keepBlocks, extraCss = '') {
  const kept = blocks.slice(blocks.length - keepBlocks);
  let page = html.slice(0, h0 + HIST.length) + kept.join('') + html.slice(h1);
  // No hydration: the site's scripts go (the probe still runs: it is injected by the browser driver).
  page = page.replace(/<script[\s\S]*?<\/script>/g, '').replace(/<link[^>]*rel="modulepreload"[^>]*>/g, '')
    .replace(/<link[^>]*\.wasm[^>]*>/g, '');
  if (extraCss) page = page.replace('</head>', `<style>${extraCss}</style></head>`);
  return { page, rows: kept.reduce((n, b) => n + rowsIn(b), 0) + screenRows, bytes: Buffer.byteLength(page) };
}
const variants = [];
const counts = [...new Set([blocks.length, 16, 8, 4, 2, 1, 0].filter((k) => k <= blocks.length))];
for (const k of counts) variants.push({ name: `${k} blocks`, ...variant(k) });
variants.push({ name: `${blocks.length} blocks, content-visibility off`, ...variant(blocks.length, '.term .blk { content-visibility: visible !important; }') });

// ---- a static server: the variants and the stylesheet ----
const server = createServer((req, res) => {
  const m = /^\/sessions\/v(\d+)$/.exec(req.url);
  if (m) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    return res.end(variants[Number(m[1])].page);
  }
  if (req.url.endsWith('.css')) {
    res.writeHead(200, { 'content-type': 'text/css' });
    return res.end(css);
  }
  res.writeHead(404);
  res.end();
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const local = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({
  executablePath: args.chromium,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const pct = (xs, p) => {
  const s = xs.filter((x) => x != null).sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] : null;
};
const fmt = (x) => (x == null ? '—' : Math.round(x));
console.log(`Static copy of the page's HTML (no server time, no JS/WASM), Chromium ${browser.version()}, viewport ${args.viewport}, ${args.runs} runs each, a fresh context per run.`);
console.log('');
console.log('| snapshot | rows | HTML bytes | response end p50 | DOM interactive p50 | FCP p50 | **marker visible p50 / p95** | long tasks p50 ms |');
console.log('|---|---|---|---|---|---|---|---|');
for (let v = 0; v < variants.length; v++) {
  const got = [];
  for (let i = 0; i < args.runs; i++) {
    const context = await browser.newContext({ viewport: { width: vw, height: vh } });
    const page = await context.newPage();
    await page.addInitScript(probe, args.marker);
    await page.goto(`${local}/sessions/v${v}`, { waitUntil: 'load' });
    await page.waitForFunction(() => window.__tv && window.__tv.visible !== null, null, { timeout: 10000, polling: 50 }).catch(() => {});
    await page.waitForTimeout(100);
    got.push(await page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      const fcp = performance.getEntriesByType('paint').find((p) => p.name === 'first-contentful-paint');
      return { visible: window.__tv.visible, responseEnd: nav.responseEnd, domInteractive: nav.domInteractive,
        fcp: fcp?.startTime ?? null, longTasks: window.__tv.longTasks.reduce((s, t) => s + t.duration, 0) };
    }));
    await context.close();
  }
  const c = (k) => got.map((g) => g[k]);
  const x = variants[v];
  console.log(`| ${x.name} | ${x.rows} | ${x.bytes.toLocaleString('en')} | ${fmt(pct(c('responseEnd'), 50))} | ${fmt(pct(c('domInteractive'), 50))} | ${fmt(pct(c('fcp'), 50))} | **${fmt(pct(c('visible'), 50))} / ${fmt(pct(c('visible'), 95))}** | ${fmt(pct(c('longTasks'), 50))} |`);
}
await browser.close();
server.close();
