// @ts-check
// Search: the form (state kept in the URL), the duration scatter, the result list, paging
// with the API's cursor, and live updates (polling for traces newer than those shown).
import * as api from './api.js';
import { navigate, showError } from './app.js';
import { drawScatter } from './scatter.js';
import {
  esc, fmtAgo, fmtDuration, fmtTime, fromLocalInput, h, LOOKBACKS, lookbackSeconds, parseDurationUs, serviceColor, toLocalInput,
} from './format.js';

const LIVE_MS = 3000;
/** How far back a live poll looks before the newest trace shown: traces are stored a
 *  linker window after they start, so a new one can be older than the newest shown. */
const LIVE_OVERLAP_US = 300e6;

/**
 * @param {HTMLElement} root
 * @param {URLSearchParams} params
 */
export function renderSearch(root, params) {
  const st = {
    service: params.get('service') ?? '',
    operation: params.get('operation') ?? '',
    status: params.get('status') ?? '',
    minDuration: params.get('minDuration') ?? '',
    maxDuration: params.get('maxDuration') ?? '',
    lookback: params.get('lookback') ?? '1h',
    start: params.get('start') ?? '',
    end: params.get('end') ?? '',
    limit: params.get('limit') ?? '20',
  };
  const live = params.get('live') !== '0' && st.lookback !== 'custom';
  root.append(h(`<div class="search-layout">
    <form class="card search-form" id="search-form" autocomplete="off">
      <h2>Find traces</h2>
      <label>Service<select name="service"><option value="">All services</option></select></label>
      <label>Operation<select name="operation"><option value="">All operations</option></select></label>
      <label>Status<select name="status">
        <option value="">Any</option><option value="ok">ok</option><option value="warning">warning</option><option value="error">error</option></select></label>
      <div class="row2">
        <label>Min duration<input name="minDuration" placeholder="e.g. 100ms" value="${esc(st.minDuration)}"></label>
        <label>Max duration<input name="maxDuration" placeholder="e.g. 2s" value="${esc(st.maxDuration)}"></label>
      </div>
      <label>Time range<select name="lookback">
        ${LOOKBACKS.map(([k]) => `<option value="${k}">Last ${k}</option>`).join('')}<option value="custom">Custom…</option></select></label>
      <div class="row2 custom-range" ${st.lookback === 'custom' ? '' : 'hidden'}>
        <label>From<input type="datetime-local" name="start"></label>
        <label>To<input type="datetime-local" name="end"></label>
      </div>
      <label>Limit<select name="limit">${[20, 50, 100, 500, 1000].map((n) => `<option>${n}</option>`).join('')}</select></label>
      <p class="form-error" role="alert" hidden></p>
      <button class="btn primary" type="submit">Find traces</button>
    </form>
    <section class="results">
      <div class="card scatter-card"><div class="scatter-head"><h3>Duration over time</h3>
        <label class="live"><input type="checkbox" name="live" ${live ? 'checked' : ''} ${st.lookback === 'custom' ? 'disabled' : ''}> <span class="live-dot"></span> Live</label></div>
        <div class="scatter-box" id="scatter"></div></div>
      <div class="results-head"><h3 id="result-count">Searching…</h3>
        <div class="sort">Sort <select name="sort"><option value="recent">Most recent</option><option value="longest">Longest first</option><option value="spans">Most spans</option><option value="errors">Most errors</option></select></div></div>
      <ol class="trace-list" id="trace-list"></ol>
      <div class="more"><button class="btn" id="load-more" hidden>Load more</button></div>
    </section></div>`));

  const form = /** @type {HTMLFormElement} */ (root.querySelector('#search-form'));
  const el = (/** @type {string} */ n) => /** @type {HTMLInputElement & HTMLSelectElement} */ (form.elements.namedItem(n));
  const list = /** @type {HTMLElement} */ (root.querySelector('#trace-list'));
  const countEl = /** @type {HTMLElement} */ (root.querySelector('#result-count'));
  const moreBtn = /** @type {HTMLButtonElement} */ (root.querySelector('#load-more'));
  const scatterEl = /** @type {HTMLElement} */ (root.querySelector('#scatter'));
  const liveBox = /** @type {HTMLInputElement} */ (root.querySelector('input[name=live]'));
  const sortSel = /** @type {HTMLSelectElement} */ (root.querySelector('select[name=sort]'));
  const formError = /** @type {HTMLElement} */ (root.querySelector('.form-error'));
  el('status').value = st.status;
  el('lookback').value = st.lookback;
  el('limit').value = st.limit;
  if (st.start) el('start').value = toLocalInput(Number(st.start));
  if (st.end) el('end').value = toLocalInput(Number(st.end));
  sortSel.value = params.get('sort') ?? 'recent';

  let disposed = false;
  /** @type {api.TraceSummary[]} */
  let traces = [];
  const shown = new Set();
  /** @type {string|undefined} */
  let cursor;
  /** @type {ReturnType<typeof setTimeout>|undefined} */
  let timer;
  const ctl = new AbortController();

  // Services and operations for the selects; the chosen ones stay even before they load.
  api.services().then((svcs) => {
    if (disposed) return;
    const sel = el('service');
    for (const s of svcs) sel.append(new Option(s, s));
    if (st.service && !svcs.includes(st.service)) sel.append(new Option(st.service, st.service));
    sel.value = st.service;
    loadOperations(st.service, st.operation);
  }).catch(() => { /* the search itself reports API errors */ });

  /** @param {string} service @param {string} chosen */
  function loadOperations(service, chosen) {
    const sel = el('operation');
    sel.replaceChildren(new Option('All operations', ''));
    if (!service) return;
    api.operations(service).then((ops) => {
      if (disposed || el('service').value !== service) return;
      for (const o of ops) sel.append(new Option(o, o));
      if (chosen && !ops.includes(chosen)) sel.append(new Option(chosen, chosen));
      sel.value = chosen;
    }).catch(() => {});
  }
  el('service').addEventListener('change', () => loadOperations(el('service').value, ''));
  el('lookback').addEventListener('change', () => {
    const custom = el('lookback').value === 'custom';
    /** @type {HTMLElement} */ (root.querySelector('.custom-range')).hidden = !custom;
    if (custom && !el('start').value) {
      const now = Date.now() * 1000;
      el('start').value = toLocalInput(now - 3600e6);
      el('end').value = toLocalInput(now);
    }
  });

  /** The query for the form as it is in the URL. */
  function query() {
    /** @type {api.TraceQuery} */
    const q = { limit: Number(st.limit) || 20 };
    if (st.service) q.service = st.service;
    if (st.operation) q.operation = st.operation;
    if (st.status) q.status = st.status;
    const min = parseDurationUs(st.minDuration), max = parseDurationUs(st.maxDuration);
    if (min !== undefined && !Number.isNaN(min)) q.minDurationUs = min;
    if (max !== undefined && !Number.isNaN(max)) q.maxDurationUs = max;
    if (st.lookback === 'custom') {
      if (st.start) q.startUs = Number(st.start);
      if (st.end) q.endUs = Number(st.end);
    } else {
      q.startUs = Date.now() * 1000 - lookbackSeconds(st.lookback) * 1e6;
    }
    return q;
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const next = new URLSearchParams();
    const min = el('minDuration').value.trim(), max = el('maxDuration').value.trim();
    for (const [name, v] of [['minDuration', min], ['maxDuration', max]]) {
      if (Number.isNaN(parseDurationUs(v))) {
        formError.textContent = `${name === 'minDuration' ? 'Min' : 'Max'} duration "${v}" is not a duration: use e.g. 250ms, 1.5s, 300us or 2m`;
        formError.hidden = false;
        return;
      }
    }
    for (const n of ['service', 'operation', 'status']) if (el(n).value) next.set(n, el(n).value);
    if (min) next.set('minDuration', min);
    if (max) next.set('maxDuration', max);
    next.set('lookback', el('lookback').value);
    if (el('lookback').value === 'custom') {
      const s = fromLocalInput(el('start').value), en = fromLocalInput(el('end').value);
      if (s !== undefined) next.set('start', String(s));
      if (en !== undefined) next.set('end', String(en));
    }
    next.set('limit', el('limit').value);
    if (sortSel.value !== 'recent') next.set('sort', sortSel.value);
    if (!liveBox.checked) next.set('live', '0');
    navigate(`/search?${next}`);
  });
  sortSel.addEventListener('change', () => {
    const p = new URLSearchParams(location.search);
    if (sortSel.value === 'recent') p.delete('sort'); else p.set('sort', sortSel.value);
    history.replaceState(null, '', `${location.pathname}?${p}`);
    renderList();
  });
  liveBox.addEventListener('change', () => {
    const p = new URLSearchParams(location.search);
    if (liveBox.checked) p.delete('live'); else p.set('live', '0');
    history.replaceState(null, '', `${location.pathname}?${p}`);
    clearTimeout(timer);
    if (liveBox.checked) schedulePoll();
    root.querySelector('.live')?.classList.toggle('on', liveBox.checked);
  });
  root.querySelector('.live')?.classList.toggle('on', live);
  moreBtn.addEventListener('click', () => loadPage(cursor));

  /** @param {string|undefined} after */
  async function loadPage(after) {
    moreBtn.disabled = true;
    try {
      const page = await api.findTraces({ ...query(), cursor: after }, ctl.signal);
      if (disposed) return;
      for (const t of page.traces) if (!shown.has(t.traceId)) { shown.add(t.traceId); traces.push(t); }
      cursor = page.next;
      renderList();
    } catch (err) {
      if (!disposed && !ctl.signal.aborted) showError(list, err);
    } finally {
      moreBtn.disabled = false;
    }
  }

  async function poll() {
    if (disposed || !liveBox.checked) return;
    try {
      const q = query();
      const newest = traces.reduce((m, t) => Math.max(m, t.startUs), 0);
      if (newest) q.startUs = Math.max(q.startUs ?? 0, newest - LIVE_OVERLAP_US);
      q.limit = 100;
      const page = await api.findTraces(q, ctl.signal);
      if (disposed) return;
      /** @type {Set<string>} */
      const fresh = new Set();
      for (const t of page.traces) if (!shown.has(t.traceId)) { shown.add(t.traceId); traces.push(t); fresh.add(t.traceId); }
      if (fresh.size) renderList(fresh);
    } catch { /* a failed poll retries at the next tick */ }
    schedulePoll();
  }
  function schedulePoll() {
    clearTimeout(timer);
    if (!disposed && liveBox.checked) timer = setTimeout(poll, LIVE_MS);
  }

  /** @param {Set<string>} [fresh] trace ids that just arrived, flashed once */
  function renderList(fresh) {
    const sorted = traces.slice();
    const by = sortSel.value;
    if (by === 'longest') sorted.sort((a, b) => b.durationUs - a.durationUs);
    else if (by === 'spans') sorted.sort((a, b) => b.spanCount - a.spanCount);
    else if (by === 'errors') sorted.sort((a, b) => b.errorCount - a.errorCount || b.startUs - a.startUs);
    else sorted.sort((a, b) => b.startUs - a.startUs);
    const maxDur = sorted.reduce((m, t) => Math.max(m, t.durationUs), 1);
    countEl.textContent = `${sorted.length} trace${sorted.length === 1 ? '' : 's'}${cursor ? ' (more available)' : ''}`;
    // One string, parsed once: a thousand rows render in one go.
    let html = '';
    for (const t of sorted) html += row(t, maxDur, fresh?.has(t.traceId) ?? false);
    list.innerHTML = html || '<li class="empty">No traces match. Widen the time range or clear a filter.</li>';
    if (!html) explainEmpty();
    moreBtn.hidden = !cursor;
    drawScatter(scatterEl, traces, (id) => navigate(`/trace/${id}`));
  }

  /** Why nothing may be stored yet, from the linker: spans waiting for their window, traces sampled out. */
  async function explainEmpty() {
    const empty = list.querySelector('.empty');
    const st = await api.status(ctl.signal);
    // The list may have been drawn again meanwhile (a sort, a poll): only this one's message, once.
    if (!st || disposed || !empty?.isConnected || empty.querySelector('.empty-why')) return;
    const notes = [];
    const windowText = fmtDuration(st.windowMs * 1000);
    if (st.spans.pending) {
      notes.push(`${st.spans.pending} span${st.spans.pending === 1 ? '' : 's'} received, waiting for the link window: a trace is stored once no span has joined it for ${windowText}.`);
    }
    if (st.spans.sampledOut && st.samplingRate < 1) {
      notes.push(`${st.spans.sampledOut} span${st.spans.sampledOut === 1 ? '' : 's'} dropped by sampling: the linker keeps ${+(st.samplingRate * 100).toPrecision(3)} % of traces (sampling_rate = ${st.samplingRate}${st.keepErrorTraces ? ', and every trace with an error' : ''}).`);
    }
    for (const n of notes) empty.appendChild(h(`<p class="empty-why">${esc(n)}</p>`));
  }

  /** @param {api.TraceSummary} t @param {number} maxDur @param {boolean} isNew */
  function row(t, maxDur, isNew) {
    const pct = Math.max(0.5, (t.durationUs / maxDur) * 100);
    return `<li class="trace-row${t.errorCount ? ' has-error' : ''}${isNew ? ' new' : ''}" data-trace-id="${esc(t.traceId)}">
      <a href="/trace/${esc(t.traceId)}" data-link>
        <div class="tr-title"><span class="svc-chip" style="--c:${serviceColor(t.rootService)}">${esc(t.rootService)}</span>
          <span class="op">${esc(t.rootOperation)}</span>
          <span class="tid">${esc(t.traceId.slice(0, 12))}</span>
          ${t.errorCount ? `<span class="badge err">${t.errorCount} error${t.errorCount === 1 ? '' : 's'}</span>` : ''}
          ${t.lateCount ? `<span class="badge late" title="spans that arrived after the trace was emitted">${t.lateCount} late</span>` : ''}
          <span class="tr-dur">${esc(fmtDuration(t.durationUs))}</span></div>
        <div class="tr-bar"><span style="width:${pct.toFixed(2)}%"></span></div>
        <div class="tr-meta"><span class="spans">${t.spanCount} span${t.spanCount === 1 ? '' : 's'}</span>
          <span class="svcs">${t.services.map((s) => `<span class="svc-tag" style="--c:${serviceColor(s)}">${esc(s)}</span>`).join('')}</span>
          <span class="when" title="${esc(fmtTime(t.startUs))}">${esc(fmtTime(t.startUs))} · ${esc(fmtAgo(t.startUs))}</span></div>
      </a></li>`;
  }

  loadPage(undefined).then(schedulePoll);
  return () => { disposed = true; ctl.abort(); clearTimeout(timer); };
}
