// @ts-check
// The service map: services and the calls between them over a chosen time range, each
// edge labelled with request rate, error rate and p50/p99 latency (from /api/dependencies).
import * as api from './api.js';
import { navigate, showError } from './app.js';
import { layoutGraph } from './maplayout.js';
import {
  esc, fmtDuration, fmtPct, fmtRate, fromLocalInput, h, LOOKBACKS, lookbackSeconds, serviceColor, toLocalInput,
} from './format.js';

const NODE_W = 168, NODE_H = 40, COL_GAP = 190, ROW_GAP = 54;
/** A peer's node key: what a service called that is not traced, apart from any service of that name. */
const PEER = '\u0001';
const nodeName = (/** @type {string} */ key) => (key.startsWith(PEER) ? key.slice(1) : key);

/** @param {HTMLElement} root @param {URLSearchParams} params */
export function renderMap(root, params) {
  const lookback = params.get('lookback') ?? '1h';
  root.append(h(`<div class="map-page">
    <form class="toolbar card map-form" autocomplete="off">
      <h2>Service map</h2>
      <label>Time range <select name="lookback">${LOOKBACKS.map(([k]) => `<option value="${k}">Last ${k}</option>`).join('')}<option value="custom">Custom…</option></select></label>
      <span class="custom-range" ${lookback === 'custom' ? '' : 'hidden'}>
        <label>From <input type="datetime-local" name="start"></label> <label>To <input type="datetime-local" name="end"></label></span>
      <button class="btn primary" type="submit">Show</button>
      <span class="muted range-text"></span>
    </form>
    <div class="card map-card"><div class="map-box"><div class="loading">Loading…</div></div></div>
    <div class="card"><h3>Calls</h3><table class="edge-table"><thead><tr><th>Caller</th><th>Callee</th><th class="num">Calls</th><th class="num">Rate</th><th class="num">Errors</th><th class="num">Error rate</th><th class="num">p50</th><th class="num">p99</th></tr></thead><tbody></tbody></table></div>
  </div>`));
  const form = /** @type {HTMLFormElement} */ (root.querySelector('form'));
  const el = (/** @type {string} */ n) => /** @type {HTMLInputElement & HTMLSelectElement} */ (form.elements.namedItem(n));
  el('lookback').value = lookback;
  const now = Date.now() * 1000;
  let startUs = now - lookbackSeconds(lookback) * 1e6, endUs = now;
  if (lookback === 'custom') {
    startUs = Number(params.get('start')) || startUs;
    endUs = Number(params.get('end')) || endUs;
  }
  el('start').value = toLocalInput(startUs);
  el('end').value = toLocalInput(endUs);
  el('lookback').addEventListener('change', () => {
    /** @type {HTMLElement} */ (root.querySelector('.custom-range')).hidden = el('lookback').value !== 'custom';
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const p = new URLSearchParams({ lookback: el('lookback').value });
    if (el('lookback').value === 'custom') {
      p.set('start', String(fromLocalInput(el('start').value) ?? startUs));
      p.set('end', String(fromLocalInput(el('end').value) ?? endUs));
    }
    navigate(`/map?${p}`);
  });
  const box = /** @type {HTMLElement} */ (root.querySelector('.map-box'));
  const tbody = /** @type {HTMLElement} */ (root.querySelector('.edge-table tbody'));
  /** @type {HTMLElement} */ (root.querySelector('.range-text')).textContent = `${new Date(startUs / 1000).toLocaleString()} – ${new Date(endUs / 1000).toLocaleString()}`;
  let disposed = false;
  api.dependencies(Math.floor(startUs), Math.ceil(endUs)).then((edges) => {
    if (disposed) return;
    const seconds = Math.max(1, (endUs - startUs) / 1e6);
    // Calls to peers that are not traced go to nodes of their own (keyed apart from services).
    draw(box, edges.map((e) => (e.peer ? { ...e, child: PEER + e.child } : e)), seconds);
    tbody.innerHTML = edges.slice().sort((a, b) => b.callCount - a.callCount).map((e) => `<tr data-edge="${esc(e.parent)}→${esc(e.child)}">
      <td><span class="svc-tag" style="--c:${serviceColor(e.parent)}">${esc(e.parent)}</span></td>
      <td>${e.peer ? `<span class="svc-tag peer" title="not traced: named by the Host it was called by, or its address">${esc(e.child)}</span> <span class="muted">not traced</span>` : `<span class="svc-tag" style="--c:${serviceColor(e.child)}">${esc(e.child)}</span>`}</td>
      <td class="num">${e.callCount}</td><td class="num">${esc(fmtRate(e.callCount / seconds))}</td>
      <td class="num">${e.errorCount}</td><td class="num${e.errorCount ? ' err-text' : ''}">${esc(fmtPct(e.errorCount / Math.max(1, e.callCount)))}</td>
      <td class="num">${esc(fmtDuration(e.p50Us))}</td><td class="num">${esc(fmtDuration(e.p99Us))}</td></tr>`).join('')
      || '<tr><td colspan="8" class="empty">No calls between services in this time range.</td></tr>';
  }).catch((err) => { if (!disposed) showError(box, err); });
  return () => { disposed = true; };
}

/**
 * @param {HTMLElement} box @param {api.DependencyEdge[]} edges @param {number} seconds
 */
function draw(box, edges, seconds) {
  const services = [...new Set(edges.flatMap((e) => [e.parent, e.child]))].sort();
  if (!services.length) {
    box.replaceChildren(h('<div class="empty">No calls between services in this time range. Traces with a single service have no edges.</div>'));
    return;
  }
  const lay = layoutGraph(services, edges);
  let layers = 0, rowsMax = 0;
  /** @type {Map<number, number>} */
  const perLayer = new Map();
  for (const { layer } of lay.values()) perLayer.set(layer, (perLayer.get(layer) ?? 0) + 1);
  for (const [l, n] of perLayer) { layers = Math.max(layers, l + 1); rowsMax = Math.max(rowsMax, n); }
  // Calls that skip a column arc above the nodes (a straight curve would run through the
  // nodes between, its label over one of them), calls back to an earlier column below them;
  // each such arc a step further out than the one before, so that their labels stay apart.
  const layerOf = (/** @type {string} */ s) => lay.get(s)?.layer ?? 0;
  const over = edges.filter((e) => layerOf(e.child) - layerOf(e.parent) > 1);
  const under = edges.filter((e) => e.parent !== e.child && layerOf(e.child) <= layerOf(e.parent));
  const ARC = 70, ARC_STEP = 44;
  const padTop = over.length ? ARC + ARC_STEP * (over.length - 1) : 0;
  const padBottom = under.length ? ARC + ARC_STEP * (under.length - 1) : 0;
  const W = Math.max(640, layers * (NODE_W + COL_GAP) - COL_GAP + 80);
  const H = Math.max(220, rowsMax * (NODE_H + ROW_GAP) + 80) + padTop + padBottom;
  const bodyH = H - padTop - padBottom;
  /** @type {Map<string, {x: number, y: number}>} */
  const xy = new Map();
  for (const [s, { layer, order }] of lay) {
    const n = perLayer.get(layer) ?? 1;
    const colH = n * (NODE_H + ROW_GAP) - ROW_GAP;
    xy.set(s, { x: 40 + layer * (NODE_W + COL_GAP), y: padTop + (bodyH - colH) / 2 + order * (NODE_H + ROW_GAP) });
  }
  /** The highest and lowest node edge in the columns from a's to b's. */
  const span = (/** @type {string} */ a, /** @type {string} */ b) => {
    const [l1, l2] = [layerOf(a), layerOf(b)].sort((x, y) => x - y);
    let top = Infinity, bottom = -Infinity;
    for (const [s, p] of xy) {
      const l = layerOf(s);
      if (l >= l1 && l <= l2) { top = Math.min(top, p.y); bottom = Math.max(bottom, p.y + NODE_H); }
    }
    return { top, bottom };
  };
  const maxRate = Math.max(...edges.map((e) => e.callCount));
  let paths = '', labels = '';
  for (const e of edges) {
    const a = /** @type {{x:number,y:number}} */ (xy.get(e.parent)), b = /** @type {{x:number,y:number}} */ (xy.get(e.child));
    const errRate = e.errorCount / Math.max(1, e.callCount);
    const cls = errRate >= 0.05 ? 'bad' : errRate >= 0.01 ? 'some-err' : '';
    const width = 1.5 + 3.5 * Math.sqrt(e.callCount / maxRate);
    let d, lx, ly;
    const overAt = over.indexOf(e);
    if (e.parent === e.child) {
      const x = a.x + NODE_W / 2, y = a.y;
      d = `M${x - 20},${y} C${x - 40},${y - 60} ${x + 40},${y - 60} ${x + 20},${y}`;
      lx = x; ly = y - 58;
    } else if (overAt >= 0) {
      // The arc's middle (where the label goes) is ARC + ARC_STEP × k above the columns' top.
      const x1 = a.x + NODE_W / 2, y1 = a.y, x2 = b.x + NODE_W / 2, y2 = b.y;
      const peak = span(e.parent, e.child).top - ARC + 17 - ARC_STEP * overAt;
      const ctl = (8 * peak - y1 - y2) / 6; // a cubic's middle: (y1 + 3 ctl + 3 ctl + y2) / 8
      d = `M${x1},${y1} C${x1},${ctl} ${x2},${ctl} ${x2},${y2}`;
      lx = (x1 + x2) / 2; ly = peak;
    } else if (b.x > a.x) {
      const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2;
      const c = (x2 - x1) / 2;
      d = `M${x1},${y1} C${x1 + c},${y1} ${x2 - c},${y2} ${x2},${y2}`;
      lx = (x1 + x2) / 2; ly = (y1 + y2) / 2;
    } else {
      // A call back to an earlier column (or within one): arc below the nodes, as above.
      const x1 = a.x + NODE_W / 2, y1 = a.y + NODE_H, x2 = b.x + NODE_W / 2, y2 = b.y + NODE_H;
      const dip = span(e.parent, e.child).bottom + ARC - 17 + ARC_STEP * under.indexOf(e);
      const ctl = (8 * dip - y1 - y2) / 6;
      d = `M${x1},${y1} C${x1},${ctl} ${x2},${ctl} ${x2},${y2}`;
      lx = (x1 + x2) / 2; ly = dip;
    }
    const title = `${e.parent} → ${nodeName(e.child)}: ${e.callCount} calls, ${e.errorCount} errors, p50 ${fmtDuration(e.p50Us)}, p99 ${fmtDuration(e.p99Us)}`;
    paths += `<path class="edge ${cls}" d="${d}" stroke-width="${width.toFixed(1)}" marker-end="url(#arrow${cls ? '-' + cls : ''})"><title>${esc(title)}</title></path>`;
    const l1 = `${fmtRate(e.callCount / seconds)} · ${fmtPct(errRate)} err`;
    const l2 = `p50 ${fmtDuration(e.p50Us)} · p99 ${fmtDuration(e.p99Us)}`;
    const lw = Math.max(l1.length, l2.length) * 6.4 + 12;
    labels += `<g class="edge-label ${cls}" data-edge="${esc(e.parent)}→${esc(nodeName(e.child))}" transform="translate(${lx.toFixed(1)},${ly.toFixed(1)})">
      <rect x="${(-lw / 2).toFixed(1)}" y="-17" width="${lw.toFixed(1)}" height="34" rx="4"/>
      <text y="-3" text-anchor="middle">${esc(l1)}</text><text y="11" text-anchor="middle">${esc(l2)}</text></g>`;
  }
  let nodes = '';
  for (const [s, { x, y }] of xy) {
    const peer = s.startsWith(PEER);
    const full = nodeName(s);
    const name = full.length > 22 ? `${full.slice(0, 21)}…` : full;
    if (peer) {
      // Not traced: no traces of its own to search; dashed, grey.
      nodes += `<g class="node peer" data-peer="${esc(full)}" transform="translate(${x},${y})">
      <rect width="${NODE_W}" height="${NODE_H}" rx="6"/><text x="${NODE_W / 2}" y="${NODE_H / 2 + 5}" text-anchor="middle">${esc(name)}</text><title>${esc(full)}: not traced (client spans with no server span, named by the Host they called or its address)</title></g>`;
      continue;
    }
    const c = serviceColor(s);
    nodes += `<g class="node" data-service="${esc(s)}" transform="translate(${x},${y})" tabindex="0" role="link" aria-label="Search traces of ${esc(s)}">
      <rect width="${NODE_W}" height="${NODE_H}" rx="6" style="--c:${c}"/><rect class="node-stripe" width="6" height="${NODE_H}" rx="3" fill="${c}"/>
      <text x="${NODE_W / 2 + 3}" y="${NODE_H / 2 + 5}" text-anchor="middle">${esc(name)}</text><title>${esc(s)}: click to search its traces</title></g>`;
  }
  const peers = services.filter((s) => s.startsWith(PEER)).length;
  const marker = (/** @type {string} */ id, /** @type {string} */ cls) => `<marker id="${id}" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="11" markerHeight="11" orient="auto-start-reverse"><path class="arrow ${cls}" d="M0,0 L10,5 L0,10 z"/></marker>`;
  box.innerHTML = `<svg class="service-map" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="Service map with ${services.length - peers} services, ${peers} not traced, and ${edges.length} calls">
    <defs>${marker('arrow', '')}${marker('arrow-some-err', 'some-err')}${marker('arrow-bad', 'bad')}</defs>${paths}${nodes}${labels}</svg>`;
  box.querySelectorAll('.node[data-service]').forEach((g) => {
    const go = () => navigate(`/search?service=${encodeURIComponent(/** @type {string} */ (g.getAttribute('data-service')))}`);
    g.addEventListener('click', go);
    g.addEventListener('keydown', (e) => { if (/** @type {KeyboardEvent} */ (e).key === 'Enter') go(); });
  });
}
