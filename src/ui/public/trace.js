// @ts-check
// The trace view: header, virtualised waterfall (only the rows in sight are in the DOM, so
// 1,000+ spans scroll smoothly), critical path, and the span detail panel. `?span=<id>` in
// the URL selects a span, so a span has a deep link too.
import * as api from './api.js';
import { showError } from './app.js';
import { esc, fmtDuration, fmtTime, h, serviceColor } from './format.js';
import { buildTrace, visibleRows } from './tracemodel.js';
import { renderSpanDetail } from './spandetail.js';

const ROW_H = 28;
const OVERSCAN = 12;
/** Indentation stops growing here so a 1,000-deep chain still shows its names. */
const MAX_INDENT_LEVELS = 24;

/**
 * @param {HTMLElement} root
 * @param {string} traceId
 * @param {URLSearchParams} params
 */
export function renderTrace(root, traceId, params) {
  let disposed = false;
  /** @type {(() => void)[]} */
  const cleanups = [];
  root.append(h(`<div class="trace-page"><div class="loading">Loading trace ${esc(traceId)}…</div></div>`));
  const page = /** @type {HTMLElement} */ (root.firstElementChild);
  api.getTrace(traceId).then((spans) => {
    if (disposed) return;
    if (!spans.length) throw new api.ApiError(404, 'SEQ_ERR_NOT_FOUND', `trace ${traceId} is not stored (expired, sampled out, or a mistyped id)`);
    cleanups.push(mount(page, traceId, spans, params.get('span') ?? ''));
  }).catch((err) => { if (!disposed) showError(page, err); });
  return () => { disposed = true; for (const c of cleanups) c(); };
}

/**
 * @param {HTMLElement} page @param {string} traceId @param {any[]} spans @param {string} selectedId
 */
function mount(page, traceId, spans, selectedId) {
  const model = buildTrace(spans);
  const total = Math.max(1, model.endUs - model.startUs);
  const root = model.root?.span;
  const collapsed = new Set();
  let showCritical = true;
  let rows = visibleRows(model.nodes, collapsed);

  page.replaceChildren(h(`<div class="trace-layout">
    <div class="card trace-head">
      <div class="th-title">
        ${root ? `<span class="svc-chip" style="--c:${serviceColor(root.service)}">${esc(root.service)}</span> <span class="op">${esc(root.resource || root.operation)}</span>` : ''}
        <span class="tid" title="trace id">${esc(traceId)}</span>
      </div>
      <dl class="th-meta">
        <div><dt>Started</dt><dd>${esc(fmtTime(model.startUs))}</dd></div>
        <div><dt>Duration</dt><dd>${esc(fmtDuration(total))}</dd></div>
        <div><dt>Services</dt><dd>${model.services.length}</dd></div>
        <div><dt>Depth</dt><dd>${model.maxDepth + 1}</dd></div>
        <div><dt>Spans</dt><dd>${model.nodes.length}</dd></div>
        <div><dt>Errors</dt><dd class="${model.errorCount ? 'err-text' : ''}">${model.errorCount}</dd></div>
        ${model.lateCount ? `<div><dt>Late</dt><dd class="late-text">${model.lateCount}</dd></div>` : ''}
        ${model.unlinkedCount ? `<div><dt>Unlinked</dt><dd class="warn-text">${model.unlinkedCount}</dd></div>` : ''}
        ${model.appTraceIds.length ? `<div><dt>App trace id</dt><dd class="mono">${model.appTraceIds.map(esc).join('<br>')}</dd></div>` : ''}
      </dl>
      <div class="legend">${model.services.map((s) => `<span class="svc-tag" style="--c:${serviceColor(s)}">${esc(s)}</span>`).join('')}</div>
    </div>
    <div class="toolbar">
      <label><input type="checkbox" name="critical" checked> Critical path</label>
      <button class="btn small" data-act="collapse">Collapse all</button>
      <button class="btn small" data-act="expand">Expand all</button>
      <span class="key"><span class="kb client">CLIENT</span> exit span · <span class="kb server">SERVER</span> entry span · <span class="cp-key"></span> critical path · <span class="kb late">LATE</span> <span class="kb unlinked">UNLINKED</span></span>
    </div>
    <div class="minimap card" title="Overview of all rows: click or drag to scroll"><canvas></canvas><div class="mm-view"></div></div>
    <div class="waterfall-wrap">
      <div class="waterfall card" role="tree" aria-label="Spans of trace ${esc(traceId)}">
        <div class="wf-head"><div class="wf-name-h">Service · operation</div><div class="wf-ticks">${ticks(total)}</div></div>
        <div class="wf-scroll"><div class="wf-spacer"><div class="wf-rows"></div></div></div>
      </div>
      <aside class="detail card" hidden></aside>
    </div></div>`));

  const scroller = /** @type {HTMLElement} */ (page.querySelector('.wf-scroll'));
  const spacer = /** @type {HTMLElement} */ (page.querySelector('.wf-spacer'));
  const rowsEl = /** @type {HTMLElement} */ (page.querySelector('.wf-rows'));
  const detail = /** @type {HTMLElement} */ (page.querySelector('.detail'));
  let raf = 0;
  const mini = /** @type {HTMLElement} */ (page.querySelector('.minimap'));
  const miniCanvas = /** @type {HTMLCanvasElement} */ (mini.querySelector('canvas'));
  const miniView = /** @type {HTMLElement} */ (mini.querySelector('.mm-view'));
  const MINI_H = 56;

  /** Every row as a thin bar, so the shape of a big trace is visible at once. */
  function drawMini() {
    const w = mini.clientWidth, dpr = window.devicePixelRatio || 1;
    miniCanvas.width = Math.max(1, Math.round(w * dpr));
    miniCanvas.height = Math.round(MINI_H * dpr);
    miniCanvas.style.width = `${w}px`;
    miniCanvas.style.height = `${MINI_H}px`;
    const ctx = miniCanvas.getContext('2d');
    if (!ctx) return;
    ctx.scale(dpr, dpr);
    const rh = MINI_H / Math.max(1, rows.length);
    for (let i = 0; i < rows.length; i++) {
      const n = rows[i];
      ctx.fillStyle = n.span.status === 'error' ? '#d32f2f' : serviceColor(n.span.service);
      const x = ((n.startUs - model.startUs) / total) * w;
      ctx.fillRect(x, i * rh, Math.max(1, ((n.endUs - n.startUs) / total) * w), Math.max(1, rh - (rh > 3 ? 1 : 0)));
    }
    placeMiniView();
  }
  function placeMiniView() {
    const all = Math.max(1, rows.length * ROW_H);
    miniView.style.top = `${(scroller.scrollTop / all) * MINI_H}px`;
    miniView.style.height = `${Math.max(3, Math.min(1, scroller.clientHeight / all) * MINI_H)}px`;
  }
  /** @param {PointerEvent} e */
  function miniScroll(e) {
    const y = e.clientY - mini.getBoundingClientRect().top;
    scroller.scrollTop = (y / MINI_H) * rows.length * ROW_H - scroller.clientHeight / 2;
  }
  mini.addEventListener('pointerdown', (e) => {
    mini.setPointerCapture(e.pointerId);
    miniScroll(e);
    const move = (/** @type {PointerEvent} */ ev) => miniScroll(ev);
    mini.addEventListener('pointermove', move);
    mini.addEventListener('pointerup', () => mini.removeEventListener('pointermove', move), { once: true });
  });

  /** Rows in the DOM by their index in `rows`: scrolling adds and removes only the rows that
   *  enter or leave the view, instead of rebuilding them all each frame. */
  /** @type {Map<number, Element>} */
  let live = new Map();
  let first = 0, last = 0;

  function layout() {
    spacer.style.height = `${rows.length * ROW_H}px`;
    redraw();
    drawMini();
  }
  /** Rebuild every row in view (rows, selection or marks changed). */
  function redraw() {
    rowsEl.replaceChildren();
    live = new Map();
    first = last = 0;
    draw();
  }
  function draw() {
    raf = 0;
    const from = Math.max(0, Math.floor(scroller.scrollTop / ROW_H) - OVERSCAN);
    const to = Math.min(rows.length, Math.ceil((scroller.scrollTop + scroller.clientHeight) / ROW_H) + OVERSCAN);
    if (from === first && to === last && live.size) return;
    for (const [i, el] of live) if (i < from || i >= to) { el.remove(); live.delete(i); }
    let html = '';
    /** @type {number[]} */
    const added = [];
    for (let i = from; i < to; i++) if (!live.has(i)) { html += rowHtml(rows[i], i); added.push(i); }
    if (html) {
      const t = document.createElement('template');
      t.innerHTML = html;
      let el = t.content.firstElementChild;
      for (const i of added) { if (!el) break; live.set(i, el); el = el.nextElementSibling; }
      rowsEl.append(t.content);
    }
    first = from;
    last = to;
  }

  /** @param {import('./tracemodel.js').SpanNode} n @param {number} i */
  function rowHtml(n, i) {
    const s = n.span;
    const color = serviceColor(s.service);
    const left = ((n.startUs - model.startUs) / total) * 100;
    const width = Math.max(0.15, ((n.endUs - n.startUs) / total) * 100);
    const indent = Math.min(n.depth, MAX_INDENT_LEVELS) * 14;
    const hasKids = n.children.length > 0;
    const isCollapsed = collapsed.has(n.id);
    const crit = showCritical ? model.critical.get(n.id) : undefined;
    let cp = '';
    if (crit) {
      for (const [a, b] of crit) {
        const l = ((a - n.startUs) / Math.max(1, n.endUs - n.startUs)) * 100;
        const w = ((b - a) / Math.max(1, n.endUs - n.startUs)) * 100;
        cp += `<span class="cp" style="left:${l.toFixed(3)}%;width:${Math.max(0.1, w).toFixed(3)}%"></span>`;
      }
    }
    // Duration label: right of the bar, else left of it, else inside a bar that fills the row.
    const labelRight = left + width < 80;
    const labelInside = !labelRight && left < 12;
    const kind = s.kind === 'exit' ? '<span class="kb client">CLIENT</span>' : '<span class="kb server">SERVER</span>';
    return `<div class="wf-row${s.spanId === selectedId ? ' selected' : ''}${s.status === 'error' ? ' error' : ''}${crit ? ' on-cp' : ''}" role="treeitem" aria-level="${n.depth + 1}" aria-expanded="${hasKids ? !isCollapsed : ''}"
      data-span-id="${esc(s.spanId)}" data-depth="${n.depth}" data-parent-id="${esc(s.parentId)}" style="top:${i * ROW_H}px">
      <div class="wf-name" style="padding-left:${indent + 6}px" title="${esc(`${s.service} ${s.resource}`)}">
        ${n.depth > MAX_INDENT_LEVELS ? `<span class="deep">${n.depth}</span>` : ''}
        ${hasKids ? `<button class="tog" data-toggle="${esc(n.id)}" aria-label="${isCollapsed ? 'Expand' : 'Collapse'}">${isCollapsed ? '▸' : '▾'}</button>` : '<span class="tog-sp"></span>'}
        <span class="stripe" style="background:${color}"></span>
        <span class="svc">${esc(s.service)}</span> <span class="res">${esc(s.resource || s.operation)}</span>
        ${kind}${s.status === 'error' ? '<span class="kb err">ERR</span>' : s.status === 'warning' ? '<span class="kb warn">WARN</span>' : ''}${s.late ? '<span class="kb late">LATE</span>' : ''}${n.flags.length ? `<span class="kb unlinked" title="${esc(n.flags.join('\n'))}">UNLINKED</span>` : ''}
        ${isCollapsed ? `<span class="hidden-count">+${n.descendants}</span>` : ''}
      </div>
      <div class="wf-bar-cell"><div class="wf-bar${s.kind === 'exit' ? ' client' : ''}" style="left:${left.toFixed(3)}%;width:${width.toFixed(3)}%;--c:${color}">${cp}</div>
        <span class="wf-dur${labelInside ? ' inside' : ''}" style="${labelRight ? `left:calc(${(left + width).toFixed(3)}% + 4px)` : labelInside ? `right:calc(${(100 - left - width).toFixed(3)}% + 6px)` : `right:calc(${(100 - left).toFixed(3)}% + 4px)`}">${esc(fmtDuration(s.durationUs))}</span></div>
    </div>`;
  }

  /** @param {string} id @param {boolean} [reveal] */
  function select(id, reveal = false) {
    selectedId = id;
    const n = model.byId.get(id);
    const url = new URL(location.href);
    if (n) url.searchParams.set('span', id); else url.searchParams.delete('span');
    history.replaceState(null, '', url);
    if (!n) { detail.hidden = true; redraw(); return; }
    if (reveal) {
      // Expand collapsed ancestors, then scroll the row into view.
      for (let p = n.parent; p; p = p.parent) collapsed.delete(p.id);
      rows = visibleRows(model.nodes, collapsed);
      spacer.style.height = `${rows.length * ROW_H}px`;
      const idx = rows.indexOf(n);
      if (idx >= 0 && (idx * ROW_H < scroller.scrollTop || (idx + 1) * ROW_H > scroller.scrollTop + scroller.clientHeight)) {
        scroller.scrollTop = Math.max(0, idx * ROW_H - scroller.clientHeight / 3);
      }
    }
    detail.hidden = false;
    renderSpanDetail(detail, n, model, {
      onClose: () => select(''),
      onSelect: (sid) => select(sid, true),
    });
    redraw();
  }

  rowsEl.addEventListener('click', (e) => {
    const t = /** @type {Element} */ (e.target);
    const tog = t.closest('[data-toggle]');
    if (tog) {
      const id = /** @type {string} */ (tog.getAttribute('data-toggle'));
      if (collapsed.has(id)) collapsed.delete(id); else collapsed.add(id);
      rows = visibleRows(model.nodes, collapsed);
      layout();
      return;
    }
    const row = t.closest('[data-span-id]');
    if (row) select(/** @type {string} */ (row.getAttribute('data-span-id')));
  });
  const onScroll = () => { if (!raf) raf = requestAnimationFrame(() => { draw(); placeMiniView(); }); };
  scroller.addEventListener('scroll', onScroll, { passive: true });
  const ro = new ResizeObserver(() => { draw(); drawMini(); });
  ro.observe(scroller);
  page.querySelector('input[name=critical]')?.addEventListener('change', (e) => {
    showCritical = /** @type {HTMLInputElement} */ (e.target).checked;
    redraw();
  });
  page.querySelector('[data-act=collapse]')?.addEventListener('click', () => {
    for (const n of model.nodes) if (n.children.length && n.depth >= 1) collapsed.add(n.id);
    rows = visibleRows(model.nodes, collapsed);
    layout();
  });
  page.querySelector('[data-act=expand]')?.addEventListener('click', () => {
    collapsed.clear();
    rows = visibleRows(model.nodes, collapsed);
    layout();
  });
  const onKey = (/** @type {KeyboardEvent} */ e) => {
    if (e.key === 'Escape' && selectedId) select('');
    if ((e.key === 'ArrowDown' || e.key === 'ArrowUp') && selectedId && !(e.target instanceof HTMLInputElement)) {
      const idx = rows.findIndex((r) => r.id === selectedId);
      const next = rows[idx + (e.key === 'ArrowDown' ? 1 : -1)];
      if (next) { e.preventDefault(); select(next.id, true); }
    }
  };
  document.addEventListener('keydown', onKey);

  layout();
  if (selectedId) select(selectedId, true);
  return () => { cancelAnimationFrame(raf); ro.disconnect(); document.removeEventListener('keydown', onKey); };
}

/** @param {number} total µs */
function ticks(total) {
  let html = '';
  for (let i = 0; i <= 4; i++) {
    const pct = i * 25;
    html += `<span class="tick" style="left:${pct}%"><span>${esc(fmtDuration((total * i) / 4))}</span></span>`;
  }
  return html;
}
