// @ts-check
// The single-page app: a tiny router over history.pushState. Every view owns the #view
// element while mounted and returns a function that unmounts it (stops timers, listeners).
import { renderSearch } from './search.js';
import { renderTrace } from './trace.js';
import { renderMap } from './map.js';
import { ApiError, services, setToken } from './api.js';
import { esc, h, setServiceOrder } from './format.js';

const view = /** @type {HTMLElement} */ (document.getElementById('view'));
/** @type {(() => void) | undefined} */
let unmount;

/** Navigate inside the app. @param {string} url @param {{replace?: boolean}} [o] */
export function navigate(url, o = {}) {
  if (o.replace) history.replaceState(null, '', url); else history.pushState(null, '', url);
  route();
}

function route() {
  unmount?.();
  unmount = undefined;
  view.replaceChildren();
  const path = location.pathname;
  const params = new URLSearchParams(location.search);
  let nav = 'search';
  const m = /^\/trace\/([^/]+)\/?$/.exec(path);
  if (m) {
    nav = '';
    unmount = renderTrace(view, decodeURIComponent(m[1]), params);
  } else if (path === '/map' || path === '/map/') {
    nav = 'map';
    unmount = renderMap(view, params);
  } else {
    unmount = renderSearch(view, params);
  }
  for (const a of document.querySelectorAll('[data-nav]')) {
    a.classList.toggle('active', a.getAttribute('data-nav') === nav);
  }
}

/** Shows an error in a view; a 401 asks for the query token. @param {HTMLElement} where @param {unknown} err */
export function showError(where, err) {
  if (err instanceof ApiError && err.status === 401) {
    const form = h(`<form class="card token-form"><h2>This seqtrace needs a query token</h2>
      <p>The server was started with <code>query_token</code>. Paste it here; it is kept in this browser only.</p>
      <input type="password" name="token" aria-label="Query token" autocomplete="off"> <button class="btn primary">Use token</button></form>`);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      setToken(/** @type {HTMLInputElement} */ (form.querySelector('input')).value.trim());
      route();
    });
    // The whole view: nothing in it can load without the token.
    view.replaceChildren(form);
    form.querySelector('input')?.focus();
    return;
  }
  const msg = err instanceof ApiError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err);
  where.replaceChildren(h(`<div class="error-box" role="alert">${esc(msg)}</div>`));
}

// In-app links: <a data-link href="/..."> navigates without a reload (ctrl/cmd-click still opens a tab).
document.addEventListener('click', (e) => {
  const a = /** @type {HTMLElement|null} */ (e.target instanceof Element ? e.target.closest('a[data-link]') : null);
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(/** @type {HTMLAnchorElement} */ (a).getAttribute('href') ?? '/');
});
window.addEventListener('popstate', route);
/** Colours by service order need the service list; a slow or failing answer must not hold up the page. */
async function start() {
  const timeout = new Promise((resolve) => setTimeout(resolve, 800));
  await Promise.race([services().then(setServiceOrder).catch(() => {}), timeout]);
  route();
}
document.getElementById('lookup')?.addEventListener('submit', (e) => {
  e.preventDefault();
  const input = /** @type {HTMLInputElement} */ (/** @type {HTMLFormElement} */ (e.target).elements.namedItem('traceId'));
  const id = input.value.trim().toLowerCase();
  if (id) { input.value = ''; navigate(`/trace/${encodeURIComponent(id)}`); }
});
start();
