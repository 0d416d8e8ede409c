#!/usr/bin/env node
// Time until the tail of a long transcript is visible in headless Chromium (target: <= 300 ms for 8 MiB).
//
// Signs in once, then opens /sessions/<id> N times, each in a fresh browser context (cold HTTP cache, as a first
// visit) or, with --cache warm, in new pages of one context. Everything is timed inside the page, relative to
// performance.timeOrigin (the navigation start):
//   - marker in DOM: a MutationObserver (installed before the document exists, via addInitScript) sees the row
//     whose text is the marker;
//   - marker visible: an IntersectionObserver (root: the viewport, so the terminal's scroll box clips) reports the
//     row fully inside (ratio >= 0.99); cross-checked by a requestAnimationFrame poll of getBoundingClientRect
//     against the terminal's scroll box and the viewport;
//   - Navigation Timing (request/response, DOM interactive/loaded), HTML size, first contentful paint, long tasks,
//     when <body data-hydrated> appeared, the live WebSocket (opened, bytes, `live`/`exit` events) and when the
//     browser redrew the transcript from its own replay.
// Also: the same page with the site's JS/WASM blocked (server-rendered HTML alone), and the server's HTML and raw
// transcript answers timed from Node (no browser).
//
//   node tail_visible.mjs --base http://127.0.0.1:3999 --session UUID --marker TAIL-MARKER-xyz [--runs 20]
//        [--ssr-runs 10] [--server-runs 20] [--cache cold|warm] [--small-session UUID] [--json out.json]
//        [--email demo@cmdop.local --password cmdop-demo] [--chromium /usr/bin/chromium] [--viewport 1920x1080]
//        [--settle-ms 30000]
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';
import { probe } from './probe.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.resolve(here, '../../end2end/package.json'));
const { chromium } = require('@playwright/test');

// ---- arguments ----
const args = {
  base: 'http://127.0.0.1:3999',
  session: null,
  marker: null,
  runs: 20,
  ssrRuns: 10,
  serverRuns: 20,
  cache: 'cold',
  smallSession: null,
  json: null,
  email: 'demo@cmdop.local',
  password: 'cmdop-demo',
  chromium: process.env.CHROMIUM ?? '/usr/bin/chromium',
  viewport: '1920x1080',
  settleMs: 30000,
  target: 300,
};
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (!(key in args)) throw new Error(`unknown option ${argv[i]}`);
    const v = argv[++i];
    args[key] = typeof args[key] === 'number' ? Number(v) : v;
  }
  if (!args.session || !args.marker) {
    console.error('usage: tail_visible.mjs --base URL --session UUID --marker TEXT [options; see the header]');
    process.exit(2);
  }
}
const [vw, vh] = args.viewport.split('x').map(Number);

// ---- helpers ----
const pct = (xs, p) => {
  const s = xs.filter((x) => x !== null && x !== undefined && !Number.isNaN(x)).sort((a, b) => a - b);
  if (!s.length) return null;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
};
const stats = (xs) => ({ n: xs.filter((x) => x != null).length, min: pct(xs, 0), p50: pct(xs, 50), p95: pct(xs, 95), max: pct(xs, 100) });
const fmt = (x, d = 0) => (x === null || x === undefined ? '—' : Number(x).toFixed(d));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function signIn(browser) {
  const context = await browser.newContext({ baseURL: args.base });
  const page = await context.newPage();
  await page.goto('/login');
  await page.getByLabel('Email').fill(args.email);
  await page.getByLabel('Password').fill(args.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/sessions$/, { timeout: 15000 });
  const state = await context.storageState();
  await context.close();
  return state;
}

async function openOnce(contextOrBrowser, state, { blockSite, settle }) {
  // A Browser: a fresh context for this run (cold cache); a BrowserContext: a new page in it (warm cache).
  const context = typeof contextOrBrowser.newContext === 'function'
    ? await contextOrBrowser.newContext({ baseURL: args.base, storageState: state, viewport: { width: vw, height: vh } })
    : contextOrBrowser;
  const page = await context.newPage();
  await page.addInitScript(probe, args.marker);
  if (blockSite) await page.route(/\/pkg\/.*\.(js|wasm)$/, (r) => r.abort());
  const problems = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  const gotoStart = Date.now();
  const response = await page.goto(`/sessions/${args.session}`, { waitUntil: 'commit' });
  const status = response?.status();
  // Until the marker is visible (or 20 s).
  await page.waitForFunction(() => window.__tv && ((window.__tv.visible !== null && window.__tv.visibleRaf !== null) || window.__tv.inBox !== null), null, {
    timeout: 20000,
    polling: 50,
  }).catch(() => {});
  let settled = null;
  if (settle) {
    // Until the browser's replay ended and it redrew the transcript (or --settle-ms), then a quiet moment.
    const deadline = Date.now() + args.settleMs;
    while (Date.now() < deadline) {
      const done = await page.evaluate(() => {
        const tv = window.__tv;
        const ws = tv.ws[0];
        const end = ws && (ws.exit ?? ws.live);
        return end != null && tv.redraws.some((r) => r.t >= end) ? tv.redraws[tv.redraws.length - 1].t : null;
      });
      if (done !== null) {
        settled = done;
        break;
      }
      await sleep(100);
    }
    await sleep(300);
  } else {
    await page.waitForLoadState('load').catch(() => {});
    await sleep(200);
  }
  const r = await page.evaluate(() => {
    const tv = window.__tv;
    const nav = performance.getEntriesByType('navigation')[0];
    const paints = Object.fromEntries(performance.getEntriesByType('paint').map((p) => [p.name, p.startTime]));
    const res = performance.getEntriesByType('resource').map((e) => ({ name: e.name, start: e.startTime, end: e.responseEnd, size: e.encodedBodySize }));
    const rows = document.querySelectorAll('.term .r').length;
    const el = [...document.querySelectorAll('.term .screen > .r, .term .hist > .blk:last-child > .r')].reverse().find((e) => e.textContent.trim() === tv.marker);
    let finalVisible = false;
    let finalInBox = false;
    let layout = null;
    const scroller = document.querySelector('.term-scroll');
    if (scroller) {
      const box = scroller.getBoundingClientRect();
      layout = { boxTop: box.top, boxBottom: box.bottom, innerHeight, pageScrollY: scrollY };
    }
    if (el) {
      const b = el.getBoundingClientRect();
      const box = el.closest('.term-scroll').getBoundingClientRect();
      finalInBox = b.top >= box.top - 0.5 && b.bottom <= box.bottom + 0.5;
      finalVisible = finalInBox && b.bottom <= innerHeight && b.top >= 0;
      layout.markerTop = b.top;
      layout.markerBottom = b.bottom;
    }
    return {
      timeOrigin: performance.timeOrigin,
      tv,
      nav: {
        requestStart: nav.requestStart,
        responseStart: nav.responseStart,
        responseEnd: nav.responseEnd,
        domInteractive: nav.domInteractive,
        domContentLoaded: nav.domContentLoadedEventEnd,
        load: nav.loadEventEnd,
        transferSize: nav.transferSize,
        encodedBodySize: nav.encodedBodySize,
        decodedBodySize: nav.decodedBodySize,
      },
      fcp: paints['first-contentful-paint'] ?? null,
      wasm: res.find((e) => e.name.endsWith('.wasm')) ?? null,
      js: res.find((e) => /\/pkg\/.*\.js$/.test(e.name)) ?? null,
      rowsAtEnd: rows,
      finalVisible,
      finalInBox,
      layout,
    };
  });
  if (context !== contextOrBrowser) await context.close();
  else await page.close();
  const tv = r.tv;
  const ws = tv.ws[0] ?? null;
  const lt = tv.longTasks;
  return {
    status,
    problems,
    gotoToNavStartMs: r.timeOrigin - gotoStart,
    inDom: tv.inDom,
    inDomReadyState: tv.inDomReadyState,
    visible: tv.visible,
    visibleAny: tv.visibleAny,
    visibleRaf: tv.visibleRaf,
    inBox: tv.inBox,
    visibleBeforeHydration: tv.visibleBeforeHydration,
    inBoxBeforeHydration: tv.inBoxBeforeHydration,
    hydrated: tv.hydrated,
    hiddenAfterVisible: tv.hiddenAfterVisible,
    hiddenMs: tv.hiddenMs,
    events: tv.events,
    markerEls: tv.markerEls,
    ...Object.fromEntries(Object.entries(r.nav).map(([k, v]) => [`nav_${k}`, v])),
    ttfb: r.nav.responseStart - r.nav.requestStart,
    fcp: r.fcp,
    lcp: tv.lcp,
    wasmStart: blockSite ? null : r.wasm?.start ?? null,
    wasmEnd: blockSite ? null : r.wasm?.end ?? null,
    wasmBytes: blockSite ? null : r.wasm?.size ?? null,
    jsStart: r.js?.start ?? null,
    wsCreated: ws?.created ?? null,
    wsOpen: ws?.open ?? null,
    wsFirst: ws?.first ?? null,
    wsLive: ws?.live ?? null,
    wsExit: ws?.exit ?? null,
    wsBytes: ws?.bytes ?? null,
    wsFrames: ws?.frames ?? null,
    redraws: tv.redraws,
    firstRedraw: tv.redraws[0]?.t ?? null,
    settled,
    rowsAtEnd: r.rowsAtEnd,
    finalVisible: r.finalVisible,
    finalInBox: r.finalInBox,
    layout: r.layout,
    longTaskCount: lt.length,
    longTaskMax: lt.reduce((m, x) => Math.max(m, x.duration), 0),
    longTaskTotal: lt.reduce((s, x) => s + x.duration, 0),
    longTaskBeforeVisible: lt.filter((x) => tv.visible !== null && x.start < tv.visible).reduce((s, x) => s + x.duration, 0),
    longTasks: lt,
  };
}

async function timeServer(cookieHeader, url, n, headers = {}) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const res = await fetch(url, { headers: { cookie: cookieHeader, ...headers } });
    const reader = res.body.getReader();
    let first = null;
    let bytes = 0;
    const parts = [];
    for (;;) {
      const { done, value } = await reader.read();
      if (first === null) first = performance.now() - t0;
      if (done) break;
      bytes += value.length;
      if (i === 0) parts.push(value);
    }
    if (i === 0 && /^text\/html/.test(res.headers.get('content-type') ?? '')) {
      const text = Buffer.concat(parts).toString('utf8');
      out.rows = text.split('<div class="r').length - 1;
    }
    out.push({ status: res.status, ttfb: first, total: performance.now() - t0, bytes, encoding: res.headers.get('content-encoding') });
  }
  return out;
}

// ---- main ----
const browser = await chromium.launch({
  executablePath: args.chromium,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const version = browser.version();
const state = await signIn(browser);
const cookieHeader = state.cookies.map((c) => `${c.name}=${c.value}`).join('; ');

const runs = [];
let shared = null;
if (args.cache === 'warm') {
  shared = await browser.newContext({ baseURL: args.base, storageState: state, viewport: { width: vw, height: vh } });
  await openOnce(shared, state, { blockSite: false, settle: true }); // fills the HTTP and code caches
}
for (let i = 0; i < args.runs; i++) {
  const r = await openOnce(shared ?? browser, state, { blockSite: false, settle: true });
  runs.push(r);
  console.error(
    `run ${i + 1}/${args.runs}: visible ${fmt(r.visible)} ms (rAF ${fmt(r.visibleRaf)}, in box ${fmt(r.inBox)}), in DOM ${fmt(r.inDom)}, ` +
      `TTFB ${fmt(r.ttfb)}, HTML ${fmt(r.nav_responseEnd)} ms ${fmt(r.nav_transferSize / 1024)} KiB, FCP ${fmt(r.fcp)}, ` +
      `hydrated ${fmt(r.hydrated)}, ws exit ${fmt(r.wsExit)}, redraw ${fmt(r.firstRedraw)} (${r.redraws.map((x) => x.rows).join(',')} rows), ` +
      `long tasks ${fmt(r.longTaskTotal)} ms (max ${fmt(r.longTaskMax)}), hidden after shown ${r.hiddenAfterVisible}` +
      `${r.problems.length ? ' PROBLEMS: ' + r.problems.join(' | ') : ''}`,
  );
}
if (shared) await shared.close();

const ssrRuns = [];
for (let i = 0; i < args.ssrRuns; i++) {
  const r = await openOnce(browser, state, { blockSite: true, settle: false });
  ssrRuns.push(r);
  console.error(`SSR-only run ${i + 1}/${args.ssrRuns}: visible ${fmt(r.visible)} ms (in box ${fmt(r.inBox)}), TTFB ${fmt(r.ttfb)}, HTML done ${fmt(r.nav_responseEnd)}, FCP ${fmt(r.fcp)}`);
}
await browser.close();

const serverBig = await timeServer(cookieHeader, `${args.base}/sessions/${args.session}`, args.serverRuns);
const serverIdentity = await timeServer(cookieHeader, `${args.base}/sessions/${args.session}`, Math.min(args.serverRuns, 10), { 'accept-encoding': 'identity' });
const serverSmall = args.smallSession
  ? await timeServer(cookieHeader, `${args.base}/sessions/${args.smallSession}`, args.serverRuns)
  : [];
const serverRaw = await timeServer(cookieHeader, `${args.base}/api/v1/sessions/${args.session}/transcript`, Math.min(args.serverRuns, 10));
const serverMeta = await timeServer(cookieHeader, `${args.base}/api/v1/sessions/${args.session}`, Math.min(args.serverRuns, 10));

// ---- report ----
const col = (rs, k) => rs.map((r) => r[k]);
const metrics = [
  ['**marker visible** (IntersectionObserver, fully inside)', 'visible'],
  ['marker visible (rAF poll: in the scroll box and the viewport)', 'visibleRaf'],
  ['marker fully inside the terminal box (page fold ignored)', 'inBox'],
  ['marker in DOM (MutationObserver)', 'inDom'],
  ['HTML: request sent → first byte (server time)', 'ttfb'],
  ['HTML: response end', 'nav_responseEnd'],
  ['DOM interactive (HTML parsed)', 'nav_domInteractive'],
  ['first contentful paint', 'fcp'],
  ['largest contentful paint', 'lcp'],
  ['WASM fetched (responseEnd)', 'wasmEnd'],
  ['body[data-hydrated] set', 'hydrated'],
  ['live WebSocket created', 'wsCreated'],
  ['live: `exit` received (replay done)', 'wsExit'],
  ['browser redrew the transcript (first)', 'firstRedraw'],
  ['long tasks: total ms (whole run)', 'longTaskTotal'],
  ['long tasks: longest ms', 'longTaskMax'],
  ['long tasks before the marker was visible (ms)', 'longTaskBeforeVisible'],
];
const table = (rs) => {
  const lines = ['| metric (ms after navigation start) | n | min | p50 | p95 | max |', '|---|---|---|---|---|---|'];
  for (const [label, k] of metrics) {
    const s = stats(col(rs, k));
    if (!s.n) continue;
    lines.push(`| ${label} | ${s.n} | ${fmt(s.min)} | ${fmt(s.p50)} | ${fmt(s.p95)} | ${fmt(s.max)} |`);
  }
  return lines.join('\n');
};
const srvRow = (label, rs) => {
  if (!rs.length) return null;
  const t = stats(col(rs, 'ttfb'));
  const a = stats(col(rs, 'total'));
  return `| ${label} | ${rs.length} | ${rs[0].status} | ${rs[0].bytes.toLocaleString('en')}${rs[0].encoding ? ` (${rs[0].encoding})` : ''} | ${fmt(t.p50, 1)} / ${fmt(t.p95, 1)} / ${fmt(t.max, 1)} | ${fmt(a.p50, 1)} / ${fmt(a.p95, 1)} / ${fmt(a.max, 1)} |`;
};
const vis = stats(col(runs, 'visible'));
const first = runs[0];
const out = [];
out.push(`Chromium ${version}, viewport ${args.viewport}, ${args.cache} cache (${args.cache === 'cold' ? 'a fresh browser context per run' : 'one context, a new page per run'}), ${runs.length} runs; session ${args.session}; marker ${args.marker}`);
out.push('');
if (vis.n) {
  out.push(`**Tail visible: p50 ${fmt(vis.p50)} ms, p95 ${fmt(vis.p95)} ms, max ${fmt(vis.max)} ms → target ≤ ${args.target} ms ${vis.p95 !== null && vis.p95 <= args.target ? 'met' : 'NOT met'}** (p95${vis.n < runs.length ? `; visible in ${vis.n} of ${runs.length} runs` : ''}).`);
} else {
  const box = stats(col(runs, 'inBox'));
  out.push(`**Tail never visible in the ${args.viewport} viewport without scrolling the page** (target ≤ ${args.target} ms NOT met); ` +
    `fully inside the terminal box: p50 ${fmt(box.p50)} ms, p95 ${fmt(box.p95)} ms, max ${fmt(box.max)} ms.`);
}
out.push('');
out.push(`HTML: ${fmt(first?.nav_decodedBodySize / 1024)} KiB decoded, ${fmt(first?.nav_transferSize / 1024)} KiB transferred (${first?.nav_transferSize < first?.nav_decodedBodySize * 0.9 ? 'compressed' : 'not compressed'}); ` +
  `rows in the server-rendered transcript: ${serverBig.rows ?? '—'}; rows after the browser's replay: ${first?.rowsAtEnd ?? '—'}; ` +
  `WASM ${fmt((first?.wasmBytes ?? 0) / 1024)} KiB; live replay ${first?.wsBytes?.toLocaleString('en') ?? '—'} bytes in ${first?.wsFrames ?? '—'} frames.`);
const lay = first?.layout;
if (lay) out.push(`Layout at ${args.viewport}: terminal box ${fmt(lay.boxTop)}–${fmt(lay.boxBottom)} px, marker row ${fmt(lay.markerTop)}–${fmt(lay.markerBottom)} px, viewport height ${lay.innerHeight} px${lay.markerBottom > lay.innerHeight ? ' → **the tail is below the fold** (visible only after scrolling the page)' : ''}.`);
out.push(`Marker visible before hydration (body[data-hydrated]): ${runs.filter((r) => r.visibleBeforeHydration).length} of ${runs.length} runs (fully inside the terminal box before it: ${runs.filter((r) => r.inBoxBeforeHydration).length}); ` +
  `first seen in the DOM while the document was ${[...new Set(runs.map((r) => r.inDomReadyState))].join('/')}; ` +
  `the browser's redraw replaced the marker row in ${runs.filter((r) => r.markerEls > 1).length} runs, leaving it not visible for ${fmt(stats(col(runs, 'hiddenMs')).max, 1)} ms at most; ` +
  `still visible at the end: ${runs.filter((r) => r.finalVisible).length} of ${runs.length} (in the box: ${runs.filter((r) => r.finalInBox).length}); ` +
  `page errors: ${runs.reduce((s, r) => s + r.problems.length, 0)}.`);
out.push('');
out.push('### Browser, site enabled');
out.push('');
out.push(table(runs));
if (ssrRuns.length) {
  out.push('');
  out.push(`### Browser, site JS/WASM blocked (server-rendered HTML alone), ${ssrRuns.length} runs`);
  out.push('');
  out.push(table(ssrRuns));
  out.push('');
  out.push(`Marker visible from the HTML alone: ${ssrRuns.filter((r) => r.visible !== null).length} of ${ssrRuns.length} runs (fully inside the terminal box: ${ssrRuns.filter((r) => r.inBox !== null).length}).`);
}
out.push('');
out.push('### Server, timed from Node (no browser, same login cookie)');
out.push('');
out.push('| request | n | status | bytes | first byte ms p50 / p95 / max | complete ms p50 / p95 / max |');
out.push('|---|---|---|---|---|---|');
for (const row of [
  srvRow('`GET /sessions/<id>` (page HTML)', serverBig),
  srvRow('the same, `Accept-Encoding: identity`', serverIdentity),
  srvRow('`GET /sessions/<demo session \"palette\">` (page HTML, a few hundred bytes of transcript)', serverSmall),
  srvRow('`GET /api/v1/sessions/<id>/transcript` (raw bytes)', serverRaw),
  srvRow('`GET /api/v1/sessions/<id>` (metadata JSON)', serverMeta),
]) if (row) out.push(row);
const report = out.join('\n');
console.log(report);
if (args.json) {
  writeFileSync(args.json, JSON.stringify({ args, chromium: version, runs, ssrRuns, serverBig, serverIdentity, serverSmall, serverRaw, serverMeta, report }, null, 2));
}
