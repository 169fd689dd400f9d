// @ts-check
// The span detail panel: every attribute of one span, grouped (span, HTTP, eBPF,
// application trace context, other attributes) with the reasons it is marked.
import { esc, fmtDuration, fmtTime, serviceColor } from './format.js';

/** Agent keys that are not span fields but belong with the HTTP or eBPF groups. */
const HTTP_ATTRS = { http_version: 'HTTP version', tls: 'TLS (HTTPS)', http_host: 'Host', http_request_id: 'X-Request-ID' };
const EBPF_ATTRS = { tid_usr: 'Goroutine id', thread_name: 'Thread name', unix_path: 'Unix socket', bytes_read: 'Bytes read', bytes_written: 'Bytes written' };

/**
 * @param {HTMLElement} el
 * @param {import('./tracemodel.js').SpanNode} n
 * @param {import('./tracemodel.js').TraceModel} model
 * @param {{onClose: () => void, onSelect: (spanId: string) => void}} on
 */
export function renderSpanDetail(el, n, model, on) {
  const s = n.span;
  const addr = (/** @type {string} */ ip, /** @type {number} */ port) => (ip ? (ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`) : '');
  const crit = model.critical.get(n.id);
  const critUs = crit ? crit.reduce((a, [x, y]) => a + (y - x), 0) : 0;
  const parent = n.parent?.span;
  const attrs = s.attrs ?? {};
  /** @param {Record<string, string>} known @returns {[string, string, unknown, string?][]} */
  const known = (known) => Object.entries(known).filter(([k]) => k in attrs).map(([k, label]) => [`attr.${k}`, label, attrs[k], 'mono']);
  /** @type {[string, [string, string, unknown, string?][]][]} */
  const groups = [
    ['Span', [
      ['service', 'Service', s.service],
      ['kind', 'Kind', s.kind === 'exit' ? 'client (exit span: this process sent the request)' : 'server (entry span: this process received the request)'],
      ['status', 'Status', s.status],
      ['start', 'Start', `${fmtTime(s.startUs)} (+${fmtDuration(s.startUs - model.startUs)})`],
      ['duration', 'Duration', fmtDuration(s.durationUs)],
      ['spanId', 'Span id', s.spanId, 'mono'],
      ['parentId', 'Parent id', s.parentId, 'mono link'],
      ['traceId', 'Trace id', s.traceId, 'mono'],
      ['processName', 'Process', s.processName],
      ['criticalPath', 'On critical path', crit ? fmtDuration(critUs) : ''],
    ]],
    ['HTTP', [
      ['resource', 'Resource', s.resource],
      ['httpMethod', 'Method', s.httpMethod],
      ['httpRoute', 'Route', s.httpRoute],
      ['httpStatusCode', 'Status code', s.httpStatusCode || ''],
      ['operation', 'Protocol', s.operation],
      ...known(HTTP_ATTRS),
    ]],
    ['eBPF', [
      ['host', 'Host', s.host],
      ['pid', 'PID', s.pid],
      ['tid', 'TID', s.tid],
      ['threadGroup', 'Thread group', s.threadGroup && s.threadGroup !== '0' ? s.threadGroup : '— (none)', 'mono'],
      ['reqSeq', 'Request seq', s.reqSeq, 'mono'],
      ['respSeq', 'Response seq', s.respSeq, 'mono'],
      ['src', s.kind === 'exit' ? 'Source (this client)' : 'Source (this server)', addr(s.srcIp, s.srcPort), 'mono'],
      ['dst', s.kind === 'exit' ? 'Destination (server)' : 'Destination (client)', addr(s.dstIp, s.dstPort), 'mono'],
      ['ebpfTraceId', 'eBPF trace id', s.ebpfTraceId, 'mono'],
      ...known(EBPF_ATTRS),
    ]],
    ['Application trace context', [
      ['appTraceId', 'App trace id', s.appTraceId, 'mono'],
      ['appParentId', 'App parent id', s.appParentId, 'mono'],
      ['appSampled', 'App sampling', s.appSampled === 1 ? 'keep' : s.appSampled === -1 ? 'drop' : ''],
    ]],
    ['Attributes', Object.keys(attrs).filter((k) => !(k in HTTP_ATTRS) && !(k in EBPF_ATTRS)).sort()
      .map((k) => /** @type {[string, string, unknown, string]} */ ([`attr.${k}`, k, attrs[k], 'mono']))],
  ];
  const flags = [];
  if (s.late) flags.push('<li class="late-text">Late: arrived after its trace had been emitted</li>');
  for (const f of n.flags) flags.push(`<li class="warn-text">${esc(f)}</li>`);
  if (s.status === 'error') flags.push(`<li class="err-text">Error${s.httpStatusCode ? `: HTTP ${s.httpStatusCode}` : ''}</li>`);

  let html = `<div class="detail-head"><span class="stripe" style="background:${serviceColor(s.service)}"></span>
    <div><div class="dh-svc">${esc(s.service)}</div><div class="dh-res">${esc(s.resource || s.operation)}</div></div>
    <button class="btn small close" aria-label="Close span details">✕</button></div>`;
  if (flags.length) html += `<ul class="flags">${flags.join('')}</ul>`;
  for (const [title, rows] of groups) {
    const present = rows.filter(([, , v]) => v !== '' && v !== undefined && v !== null);
    if (!present.length) continue;
    html += `<section class="attr-group" data-group="${esc(title)}"><h4>${esc(title)}</h4><table>`;
    for (const [field, label, value, cls] of present) {
      const isParentLink = field === 'parentId' && parent;
      const v = isParentLink ? `<a href="#" data-select="${esc(value)}">${esc(value)}</a> <span class="muted">${esc(parent.service)}</span>` : esc(value);
      html += `<tr data-field="${esc(field)}"><th>${esc(label)}</th><td class="${esc(cls ?? '')}">${v}</td></tr>`;
    }
    html += '</table></section>';
  }
  if (n.children.length) {
    html += `<section class="attr-group"><h4>Children (${n.children.length})</h4><ul class="kids">`;
    for (const c of n.children.slice(0, 50)) {
      html += `<li><a href="#" data-select="${esc(c.id)}"><span class="svc-tag" style="--c:${serviceColor(c.span.service)}">${esc(c.span.service)}</span> ${esc(c.span.resource)}</a> <span class="muted">${esc(fmtDuration(c.span.durationUs))}</span></li>`;
    }
    if (n.children.length > 50) html += `<li class="muted">… ${n.children.length - 50} more</li>`;
    html += '</ul></section>';
  }
  el.innerHTML = html;
  el.querySelector('.close')?.addEventListener('click', on.onClose);
  el.querySelectorAll('[data-select]').forEach((a) => a.addEventListener('click', (e) => {
    e.preventDefault();
    on.onSelect(/** @type {string} */ (a.getAttribute('data-select')));
  }));
}
