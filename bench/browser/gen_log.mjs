#!/usr/bin/env node
// Writes a realistic, deterministic terminal transcript: a long build-and-test log (lines of ~80-120 visible
// characters, SGR colors as cargo/rustc/test runners print them, "\r\n" line ends as a terminal receives them),
// exactly SIZE bytes long, whose last line is the marker. Recorded with `stty -opost; cat FILE` the PTY passes it
// through unchanged, so the stored transcript is exactly SIZE bytes.
//
//   node gen_log.mjs OUT_FILE MARKER [SIZE_BYTES=8388608] [SEED=1]
import { openSync, writeSync, closeSync } from 'node:fs';

const [out, marker, sizeArg, seedArg] = process.argv.slice(2);
if (!out || !marker) {
  console.error('usage: gen_log.mjs OUT_FILE MARKER [SIZE_BYTES] [SEED]');
  process.exit(2);
}
const size = Number(sizeArg ?? 8 * 1024 * 1024);
let seed = Number(seedArg ?? 1) >>> 0;
// mulberry32: small, deterministic.
function rnd() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rnd() * a.length)];
const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));

const E = '\x1b[';
const crates = ['tokio', 'serde_json', 'hyper-util', 'axum-core', 'leptos_reactive', 'sqlx-sqlite', 'cmdop-store',
  'cmdop-transcript', 'tower-http', 'regex-automata', 'wasm-bindgen-macro', 'futures-util', 'tracing-subscriber',
  'rustls-webpki', 'unicode-segmentation', 'portable-pty', 'cmdop-inspector-server', 'hashbrown', 'indexmap'];
const words = ['request', 'session', 'transcript', 'offset', 'viewer', 'commit', 'batch', 'writer', 'frame', 'chunk',
  'ring', 'buffer', 'retained', 'socket', 'replay', 'cursor', 'migration', 'fleet', 'machine', 'token', 'render'];
const mods = ['store::sql', 'live::hub', 'ingest::writer', 'transcript::doc', 'api::sessions', 'auth::cookie',
  'reaper', 'pages::session', 'protocol::live', 'agent::uplink'];

let t = 0;
const ts = () => {
  t += rnd() * 0.05;
  return `${E}2m[${t.toFixed(3).padStart(9)}s]${E}0m `;
};
const sentence = (n) => Array.from({ length: n }, () => pick(words)).join(' ');
const version = () => `v${int(0, 3)}.${int(0, 40)}.${int(0, 20)}`;
const path = () => `/home/ci/.cargo/registry/src/index.crates.io-${int(1000, 9999)}/${pick(crates)}-${version().slice(1)}`;
const fill = (line, min) => (line.length >= min ? line : line + ' ' + sentence(Math.ceil((min - line.length) / 7)));

const kinds = [
  [30, () => `${ts()}${E}1;32m   Compiling${E}0m ${pick(crates)} ${version()} (${path()})`],
  [10, () => `${ts()}${E}1;33mwarning${E}0m${E}1m: unused variable: \`${pick(words)}_${pick(words)}\`${E}0m --> src/${pick(words)}.rs:${int(1, 900)}:${int(1, 80)}`],
  [25, () => `${ts()}test ${pick(mods)}::tests::${pick(words)}_${pick(words)}_${pick(words)} ... ${rnd() < 0.97 ? `${E}32mok${E}0m` : `${E}31mFAILED${E}0m`} (${int(0, 900)} ms)`],
  [20, () => `${ts()}${E}36mINFO${E}0m ${pick(mods)}: ${sentence(int(6, 10))} id=${int(1e5, 9e5)} bytes=${int(0, 65536)}`],
  [5, () => `${ts()}${E}1;31merror${E}0m${E}1m[E0${int(100, 799)}]${E}0m: ${sentence(int(6, 9))} in \`${pick(mods)}\``],
  [10, () => `${ts()}${E}38;5;${int(16, 231)}m${pick(crates)}${E}0m | ${sentence(int(8, 12))}`],
];
const total = kinds.reduce((s, k) => s + k[0], 0);
function line() {
  let r = rnd() * total;
  for (const [w, f] of kinds) {
    if ((r -= w) < 0) return f();
  }
  return kinds[0][1]();
}
// Visible width of a line (SGR sequences take no cells).
const visible = (s) => s.replace(/\x1b\[[0-9;]*m/g, '').length;
function clip(s, max) {
  // Cut to at most `max` visible characters without splitting an escape sequence.
  let out = '', n = 0;
  for (let i = 0; i < s.length && n < max; ) {
    const m = /^\x1b\[[0-9;]*m/.exec(s.slice(i, i + 24));
    if (m) { out += m[0]; i += m[0].length; continue; }
    out += s[i++]; n++;
  }
  return out + `${E}0m`;
}

const tail = `${E}1;32m    Finished${E}0m \`release\` profile [optimized] target(s) in 1712.04s\r\n`;
const markerLine = `${marker}\r\n`;
const end = Buffer.from(tail + markerLine);
const fd = openSync(out, 'w');
let written = 0;
let lines = 0;
let buf = [];
let bufLen = 0;
while (written + bufLen + end.length + 200 < size) {
  let l = fill(line(), int(80, 110));
  if (visible(l) > 118) l = clip(l, 118);
  const b = Buffer.from(l + '\r\n');
  buf.push(b);
  bufLen += b.length;
  lines++;
  if (bufLen > 1 << 20) {
    const chunk = Buffer.concat(buf);
    writeSync(fd, chunk);
    written += chunk.length;
    buf = [];
    bufLen = 0;
  }
}
if (bufLen) {
  const chunk = Buffer.concat(buf);
  writeSync(fd, chunk);
  written += chunk.length;
}
// Pad with plain lines (at most 120 characters) so that the file is exactly `size` bytes.
let left = size - written - end.length;
while (left > 0) {
  const n = left > 122 ? int(60, 100) : left - 2;
  const l = Buffer.from(sentence(30).slice(0, n).padEnd(n, '.') + '\r\n');
  writeSync(fd, l);
  written += l.length;
  left -= l.length;
  lines++;
}
writeSync(fd, end);
written += end.length;
lines += 2;
closeSync(fd);
console.log(JSON.stringify({ file: out, bytes: written, lines, marker }));
