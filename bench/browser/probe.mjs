// The in-page probe of the tail benchmarks: passed to page.addInitScript(probe, marker), so it runs in each
// /sessions/ document before any of the page's own scripts. It keeps its findings in window.__tv (times are
// performance.now(), i.e. ms after the navigation start); see tail_visible.mjs.
export function probe(marker) {
  if (!location.pathname.startsWith('/sessions/')) return;
  const tv = (window.__tv = {
    marker,
    events: [],
    inDom: null, // first time the marker row was in the DOM
    inDomReadyState: null,
    visible: null, // IntersectionObserver: fully visible
    visibleAny: null, // IntersectionObserver: any part visible
    visibleRaf: null, // rAF poll: inside the scroll box and the viewport
    inBox: null, // IntersectionObserver with the terminal's scroll box as root: fully inside it (page fold ignored)
    visibleBeforeHydration: null,
    inBoxBeforeHydration: null,
    hydrated: null,
    hiddenAfterVisible: 0, // times the marker row stopped being visible (or was replaced) after first shown
    hiddenMs: 0,
    lastHiddenAt: null,
    rowsInDom: [],
    redraws: [],
    ws: [],
    longTasks: [],
    lcp: null,
    markerEls: 0,
  });
  const now = () => performance.now();
  const ev = (kind, extra) => tv.events.push({ t: now(), kind, ...extra });
  let el = null;
  let io = null;
  let ioBox = null;
  let shown = false;

  function findMarker() {
    const term = document.querySelector('.term');
    if (!term) return null;
    for (const sel of ['.screen > .r', '.hist > .blk:last-child > .r']) {
      const rows = term.querySelectorAll(sel);
      for (let i = rows.length - 1; i >= 0 && i >= rows.length - 400; i--) {
        if (rows[i].textContent.trim() === marker) return rows[i];
      }
    }
    return null;
  }
  function setShown(on, t) {
    if (on && !shown) {
      shown = true;
      if (tv.lastHiddenAt !== null) tv.hiddenMs += t - tv.lastHiddenAt;
      tv.lastHiddenAt = null;
    } else if (!on && shown) {
      shown = false;
      tv.hiddenAfterVisible++;
      tv.lastHiddenAt = t;
      ev('hidden');
    }
  }
  function track(found) {
    if (found === el) return;
    if (io) io.disconnect();
    if (ioBox) ioBox.disconnect();
    if (el && !found) setShown(false, now());
    el = found;
    if (!el) return;
    tv.markerEls++;
    if (tv.inDom === null) {
      tv.inDom = now();
      tv.inDomReadyState = document.readyState;
    }
    ev('marker-in-dom', { n: tv.markerEls, readyState: document.readyState });
    if (tv.markerEls > 1) setShown(false, now());
    io = new IntersectionObserver(
      (entries) => {
        for (const e of entries) {
          if (e.target !== el) continue;
          if (e.isIntersecting && tv.visibleAny === null) tv.visibleAny = e.time;
          const full = e.isIntersecting && e.intersectionRatio >= 0.99;
          if (full && tv.visible === null) {
            tv.visible = e.time;
            tv.visibleBeforeHydration = tv.hydrated === null;
            ev('marker-visible', { ratio: e.intersectionRatio });
          }
          setShown(full, e.time);
        }
      },
      { threshold: [0, 0.99, 1] },
    );
    io.observe(el);
    const box = el.closest('.term-scroll');
    if (box) {
      ioBox = new IntersectionObserver(
        (entries) => {
          for (const e of entries) {
            if (e.target === el && e.isIntersecting && e.intersectionRatio >= 0.99 && tv.inBox === null) {
              tv.inBox = e.time;
              tv.inBoxBeforeHydration = tv.hydrated === null;
            }
          }
        },
        { root: box, threshold: [0, 0.99, 1] },
      );
      ioBox.observe(el);
    }
  }
  const mo = new MutationObserver((records) => {
    let termChanged = false;
    for (const r of records) {
      if (r.type === 'attributes') {
        if (r.attributeName === 'data-hydrated' && tv.hydrated === null && document.body?.hasAttribute('data-hydrated')) {
          tv.hydrated = now();
          ev('hydrated');
        }
        continue;
      }
      const t = r.target;
      if (t.nodeType === 1 && (t.classList.contains('term') || t.classList.contains('screen') ||
          t.classList.contains('hist') || t.classList.contains('blk') || t.closest?.('.term'))) termChanged = true;
      else if (r.addedNodes.length) {
        for (const n of r.addedNodes) {
          if (n.nodeType === 1 && (n.matches('.term, .term *') || n.querySelector?.('.term'))) { termChanged = true; break; }
        }
      }
      // The browser's own rendering replaces the whole transcript (set_inner_html on .term).
      if (t.nodeType === 1 && t.classList.contains('term') && r.removedNodes.length && document.readyState !== 'loading') {
        const rows = t.querySelectorAll('.r').length;
        tv.redraws.push({ t: now(), rows });
        ev('term-redraw', { rows });
      }
    }
    if (termChanged || (el && !el.isConnected)) track(findMarker());
  });
  mo.observe(document, { childList: true, subtree: true, attributes: true, attributeFilter: ['data-hydrated'] });

  function raf() {
    if (el && el.isConnected && tv.visibleRaf === null) {
      const r = el.getBoundingClientRect();
      const box = el.closest('.term-scroll')?.getBoundingClientRect();
      const inBox = box && r.top >= box.top - 0.5 && r.bottom <= box.bottom + 0.5 && r.height > 0;
      const inViewport = r.top >= 0 && r.bottom <= innerHeight && r.left < innerWidth && r.right > 0;
      if (inBox && inViewport) tv.visibleRaf = now();
    }
    if (performance.now() < 30000 && (tv.visibleRaf === null || tv.visible === null)) requestAnimationFrame(raf);
  }
  requestAnimationFrame(raf);

  try {
    new PerformanceObserver((l) => {
      for (const e of l.getEntries()) tv.longTasks.push({ start: e.startTime, duration: e.duration });
    }).observe({ type: 'longtask', buffered: true });
  } catch {}
  try {
    new PerformanceObserver((l) => {
      for (const e of l.getEntries()) tv.lcp = e.startTime;
    }).observe({ type: 'largest-contentful-paint', buffered: true });
  } catch {}

  // The live stream: when it opened, how much the replay sent, when `live` / `exit` arrived.
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...a) {
      super(...a);
      const w = { url: String(a[0]), created: now(), open: null, first: null, bytes: 0, frames: 0, live: null, exit: null, closed: null };
      tv.ws.push(w);
      this.addEventListener('open', () => (w.open = now()));
      this.addEventListener('close', () => (w.closed = now()));
      this.addEventListener('message', (e) => {
        if (w.first === null) w.first = now();
        if (typeof e.data === 'string') {
          if (e.data.includes('"type":"live"')) w.live = now();
          if (e.data.includes('"type":"exit"')) w.exit = now();
        } else {
          w.frames++;
          w.bytes += e.data.byteLength ?? e.data.size ?? 0;
        }
      });
    }
  };
}

