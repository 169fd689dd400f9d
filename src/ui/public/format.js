// @ts-check
// Formatting shared by the views: durations, times, service colours, HTML escaping.

/** @param {number} us microseconds */
export function fmtDuration(us) {
  if (!Number.isFinite(us)) return '–';
  if (us < 1000) return `${Math.round(us)}µs`;
  if (us < 1_000_000) return `${trim(us / 1000)}ms`;
  if (us < 60_000_000) return `${trim(us / 1_000_000)}s`;
  const m = Math.floor(us / 60_000_000);
  return `${m}m ${Math.round((us - m * 60_000_000) / 1_000_000)}s`;
}

/** @param {number} v */
function trim(v) {
  // Three significant digits, without trailing zeros: 12.5ms, 20ms, 1.25s.
  return String(Number(v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)));
}

/** @param {number} us µs since epoch → local `YYYY-MM-DD HH:MM:SS.mmm` */
export function fmtTime(us) {
  const d = new Date(us / 1000);
  const p = (/** @type {number} */ n, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/**
 * A time axis's tick label: as precise as the ticks are apart (`stepUs`), so that neighbours
 * differ: milliseconds under a second apart, the date once they are a day apart.
 * @param {number} us @param {number} stepUs
 */
export function fmtAxisTime(us, stepUs) {
  const t = fmtTime(us);
  if (stepUs < 1e6) return t.slice(11, 23);
  if (stepUs < 60e6) return t.slice(11, 19);
  if (stepUs < 86_400e6) return t.slice(11, 16);
  return t.slice(5, 16);
}

/** @param {number} us */
export function fmtAgo(us) {
  const s = Math.max(0, (Date.now() * 1000 - us) / 1_000_000);
  if (s < 60) return `${Math.floor(s)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

/** @param {number} x a ratio 0…1 */
export function fmtPct(x) {
  if (!Number.isFinite(x)) return '–';
  const p = x * 100;
  return p === 0 ? '0%' : p < 0.1 ? '<0.1%' : p < 10 ? `${p.toFixed(1)}%` : `${Math.round(p)}%`;
}

/** @param {number} perSec */
export function fmtRate(perSec) {
  if (perSec >= 100) return `${Math.round(perSec)}/s`;
  if (perSec >= 1) return `${perSec.toFixed(1)}/s`;
  if (perSec * 60 >= 1) return `${(perSec * 60).toFixed(1)}/min`;
  if (perSec * 3600 >= 0.1) return `${(perSec * 3600).toFixed(1)}/h`;
  // (a call in a day read 0.0/h)
  return `${(perSec * 86400).toFixed(1)}/day`;
}

// Distinct on white and dark enough for white text; the first ones differ the most.
const PALETTE = ['#2f6db5', '#e07b00', '#2e9e44', '#8e5bc6', '#0f9aa8', '#c2407f', '#7a8b00', '#b5542c',
  '#3949ab', '#5b6b7a', '#00796b', '#9c6b00', '#6d4c9f', '#1e88e5', '#ad1457', '#558b2f'];
/** @type {Map<string, string>} */
const assigned = new Map();

/**
 * Gives the known services (sorted, from /api/services) consecutive palette colours, so a
 * handful of services never share a colour as hashing could make them.
 * @param {string[]} services
 */
export function setServiceOrder(services) {
  assigned.clear();
  services.forEach((s, i) => assigned.set(s, PALETTE[i % PALETTE.length]));
}

/** Stable colour per service name: by its place among known services, else by hash. */
export function serviceColor(/** @type {string} */ name) {
  const c = assigned.get(name);
  if (c) return c;
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  return PALETTE[(h >>> 0) % PALETTE.length];
}

/** @param {unknown} s */
export function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);
}

/**
 * Parses `250ms`, `1.5s`, `300us`/`300µs`, `2m` or a bare number of ms into µs; undefined
 * when empty, NaN when malformed (the caller reports it).
 * @param {string} s
 */
export function parseDurationUs(s) {
  const t = s.trim();
  if (!t) return undefined;
  const m = /^(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m|h)?$/.exec(t);
  if (!m) return NaN;
  const mult = { us: 1, µs: 1, ms: 1000, s: 1e6, m: 6e7, h: 3.6e9 }[m[2] ?? 'ms'] ?? 1000;
  return Math.round(Number(m[1]) * mult);
}

/** Lookbacks offered in the time range selectors; value in seconds. */
export const LOOKBACKS = [
  ['5m', 300], ['15m', 900], ['1h', 3600], ['6h', 21600], ['24h', 86400], ['7d', 604800],
];

/** @param {string} lb */
export function lookbackSeconds(lb) {
  const f = LOOKBACKS.find(([k]) => k === lb);
  return f ? /** @type {number} */ (f[1]) : 3600;
}

/**
 * Builds an element from an HTML string (trusted template, values passed through esc()).
 * @param {string} html
 * @returns {HTMLElement}
 */
export function h(html) {
  const t = document.createElement('template');
  t.innerHTML = html.trim();
  return /** @type {HTMLElement} */ (t.content.firstElementChild);
}

/** `datetime-local` value ↔ µs since epoch (local time). */
export function toLocalInput(/** @type {number} */ us) {
  const d = new Date(us / 1000 - new Date(us / 1000).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}
export function fromLocalInput(/** @type {string} */ v) {
  if (!v) return undefined;
  const ms = new Date(v).getTime();
  return Number.isFinite(ms) ? ms * 1000 : undefined;
}
