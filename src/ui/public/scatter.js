// @ts-check
// Duration over time for the traces found: one dot per trace, errors red, so the slow ones
// stand out at the top. SVG sized to its container; redrawn whole (a page is ≤ 1,000 dots).
import { esc, fmtAxisTime, fmtDuration, fmtTime, serviceColor } from './format.js';

const NS = 'http://www.w3.org/2000/svg';

/**
 * @param {HTMLElement} el
 * @param {import('./api.js').TraceSummary[]} traces
 * @param {(traceId: string) => void} onPick
 */
export function drawScatter(el, traces, onPick) {
  const W = Math.max(320, el.clientWidth || 900);
  const H = 170;
  const m = { l: 58, r: 14, t: 10, b: 24 };
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('width', String(W));
  svg.setAttribute('height', String(H));
  svg.setAttribute('class', 'scatter');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `Duration of ${traces.length} traces over time`);
  if (!traces.length) { el.replaceChildren(svg); return; }
  let t0 = Infinity, t1 = -Infinity, dMax = 0;
  for (const t of traces) {
    if (t.startUs < t0) t0 = t.startUs;
    if (t.startUs > t1) t1 = t.startUs;
    if (t.durationUs > dMax) dMax = t.durationUs;
  }
  if (t1 === t0) { t0 -= 1e6; t1 += 1e6; }
  // Gridlines at a round step (1, 2, 2.5 or 5 × 10ⁿ), at most four above zero.
  const step = niceCeil(((dMax || 1) * 1.05) / 4);
  const rows = Math.ceil(((dMax || 1) * 1.05) / step);
  dMax = rows * step;
  const x = (/** @type {number} */ us) => m.l + ((us - t0) / (t1 - t0)) * (W - m.l - m.r);
  const y = (/** @type {number} */ d) => H - m.b - (d / dMax) * (H - m.t - m.b);
  let html = '';
  for (let i = 0; i <= rows; i++) {
    const d = step * i;
    html += `<line class="grid" x1="${m.l}" x2="${W - m.r}" y1="${y(d)}" y2="${y(d)}"/>`;
    html += `<text class="axis" x="${m.l - 6}" y="${y(d) + 4}" text-anchor="end">${esc(fmtDuration(d))}</text>`;
  }
  for (let i = 0; i <= 4; i++) {
    const us = t0 + ((t1 - t0) * i) / 4;
    const anchor = i === 0 ? 'start' : i === 4 ? 'end' : 'middle';
    html += `<text class="axis" x="${x(us)}" y="${H - 6}" text-anchor="${anchor}">${esc(fmtAxisTime(us, (t1 - t0) / 4))}</text>`;
  }
  // Slow dots last, so they sit on top.
  const sorted = traces.slice().sort((a, b) => a.durationUs - b.durationUs);
  for (const t of sorted) {
    const r = 3 + Math.min(5, Math.log2(1 + t.spanCount) / 1.5);
    const color = t.errorCount ? '#d32f2f' : serviceColor(t.rootService);
    html += `<circle class="dot${t.errorCount ? ' err' : ''}" data-trace-id="${esc(t.traceId)}" cx="${x(t.startUs).toFixed(1)}" cy="${y(t.durationUs).toFixed(1)}" r="${r.toFixed(1)}" fill="${color}">`
      + `<title>${esc(`${t.rootService}: ${t.rootOperation}\n${fmtDuration(t.durationUs)}, ${t.spanCount} spans${t.errorCount ? `, ${t.errorCount} errors` : ''}\n${fmtTime(t.startUs)}`)}</title></circle>`;
  }
  svg.innerHTML = html;
  svg.addEventListener('click', (e) => {
    const id = e.target instanceof Element ? e.target.getAttribute('data-trace-id') : null;
    if (id) onPick(id);
  });
  el.replaceChildren(svg);
}

/** @param {number} v */
function niceCeil(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const s of [1, 2, 2.5, 5, 10]) if (s * p >= v) return s * p;
  return 10 * p;
}
