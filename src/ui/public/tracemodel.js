// @ts-check
// A trace's spans as a tree: nesting by parentId, the trace's root, unlinked spans, the
// critical path. Pure functions (no DOM), so the browser tests can check them directly.

/**
 * @typedef {Object} SpanNode
 * @property {any} span          the LinkedSpan
 * @property {string} id
 * @property {SpanNode|null} parent
 * @property {SpanNode[]} children
 * @property {number} depth
 * @property {number} startUs
 * @property {number} endUs
 * @property {string[]} flags    human-readable reasons this span is unlinked, '' when linked
 * @property {number} descendants
 */

/**
 * @typedef {Object} TraceModel
 * @property {SpanNode[]} nodes       depth-first, children by start
 * @property {Map<string, SpanNode>} byId
 * @property {SpanNode|undefined} root
 * @property {SpanNode[]} roots       every node without a parent in the trace
 * @property {number} startUs
 * @property {number} endUs
 * @property {string[]} services      in order of first appearance
 * @property {Map<string, [number, number][]>} critical  spanId → segments on the critical path
 * @property {number} maxDepth
 * @property {number} errorCount
 * @property {number} lateCount
 * @property {number} unlinkedCount
 * @property {string[]} appTraceIds
 */

/** @param {any[]} spans @returns {TraceModel} */
export function buildTrace(spans) {
  /** @type {Map<string, SpanNode>} */
  const byId = new Map();
  for (const s of spans) {
    byId.set(s.spanId, {
      span: s, id: s.spanId, parent: null, children: [], depth: 0,
      startUs: s.startUs, endUs: s.startUs + s.durationUs, flags: [], descendants: 0,
    });
  }
  /** @type {SpanNode[]} */
  const roots = [];
  for (const n of byId.values()) {
    const p = n.span.parentId ? byId.get(n.span.parentId) : undefined;
    if (p && p !== n) { n.parent = p; p.children.push(n); } else roots.push(n);
  }
  const byStart = (/** @type {SpanNode} */ a, /** @type {SpanNode} */ b) => a.startUs - b.startUs || b.endUs - a.endUs;
  roots.sort(byStart);
  // The trace's root: a span that claims no parent, earliest first, longest on a tie. A
  // span pointing at a parent outside the trace is never the root: it lost its parent.
  const root = roots.find((n) => !n.span.parentId) ?? roots[0];
  for (const n of roots) {
    if (n === root) continue;
    n.flags.push(n.span.parentId
      ? `unlinked: its parent ${n.span.parentId} is not in this trace`
      : 'unlinked: no parent, and not the trace\'s root');
  }

  /** @type {SpanNode[]} */
  const nodes = [];
  let maxDepth = 0;
  // Iterative DFS: a 1,000-span chain must not blow the stack.
  /** @type {[SpanNode, number][]} */
  const stack = [];
  const ordered = root ? [root, ...roots.filter((r) => r !== root)] : roots;
  for (let i = ordered.length - 1; i >= 0; i--) stack.push([ordered[i], 0]);
  const seen = new Set();
  while (stack.length) {
    const [n, depth] = /** @type {[SpanNode, number]} */ (stack.pop());
    if (seen.has(n)) continue; // a parentId cycle: show each span once
    seen.add(n);
    n.depth = depth;
    if (depth > maxDepth) maxDepth = depth;
    nodes.push(n);
    n.children.sort(byStart);
    for (let i = n.children.length - 1; i >= 0; i--) stack.push([n.children[i], depth + 1]);
  }
  // Spans only reachable through a cycle.
  for (const n of byId.values()) if (!seen.has(n)) { n.flags.push('unlinked: its parent chain loops'); nodes.push(n); }
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i];
    if (n.parent && seen.has(n.parent)) n.parent.descendants += n.descendants + 1;
  }

  let startUs = Infinity, endUs = -Infinity, errorCount = 0, lateCount = 0;
  const services = [];
  const svcSeen = new Set();
  const app = new Set();
  for (const n of nodes) {
    const s = n.span;
    if (n.startUs < startUs) startUs = n.startUs;
    if (n.endUs > endUs) endUs = n.endUs;
    if (s.status === 'error') errorCount++;
    if (s.late) lateCount++;
    if (s.appTraceId) app.add(s.appTraceId);
    if (!svcSeen.has(s.service)) { svcSeen.add(s.service); services.push(s.service); }
    // A client call should meet its server: an exit span with no entry child means the
    // callee was not traced or its side did not link.
    if (s.kind === 'exit' && !n.children.some((c) => c.span.kind === 'entry')) {
      // Named as the service map names such a peer: the Host it called, else the address.
      const host = s.attrs?.http_host;
      const peer = typeof host === 'string' && host ? host : s.dstIp ? (s.dstIp.includes(':') ? `[${s.dstIp}]:${s.dstPort}` : `${s.dstIp}:${s.dstPort}`) : 'its peer';
      n.flags.push(`client span without a server side (${peer} not traced, or its span did not link)`);
    }
  }
  if (!nodes.length) { startUs = 0; endUs = 0; }
  const unlinkedCount = nodes.filter((n) => n.flags.length).length;
  return {
    nodes, byId, root, roots, startUs, endUs, services, maxDepth, errorCount, lateCount, unlinkedCount,
    critical: root ? criticalPath(root) : new Map(),
    appTraceIds: [...app],
  };
}

/**
 * The critical path (as Jaeger draws it): walking back from the root's end, the child that
 * finished last before the point reached is what the parent waited for; then the same
 * inside that child, and the parent's own time fills the gaps. A sibling still running at
 * that point ran in parallel and is not on the path. Children overrunning their parent are
 * clipped to it.
 * @param {SpanNode} root
 * @returns {Map<string, [number, number][]>}
 */
export function criticalPath(root) {
  /** @type {Map<string, [number, number][]>} */
  const out = new Map();
  const add = (/** @type {SpanNode} */ n, /** @type {number} */ a, /** @type {number} */ b) => {
    if (b <= a) return;
    const segs = out.get(n.id);
    if (segs) segs.push([a, b]); else out.set(n.id, [[a, b]]);
  };
  // Explicit stack of (node, window start, window end) to stay iterative on deep traces.
  /** @type {[SpanNode, number, number][]} */
  const work = [[root, root.startUs, root.endUs]];
  while (work.length) {
    const [n, lo, hi] = /** @type {[SpanNode, number, number]} */ (work.pop());
    let cursor = hi;
    const kids = n.children
      .map((c) => /** @type {[SpanNode, number, number]} */ ([c, Math.max(c.startUs, lo), Math.min(c.endUs, hi)]))
      .filter(([, a, b]) => b > a)
      .sort((x, y) => y[2] - x[2]);
    for (const [c, cStart, cEnd] of kids) {
      if (cursor <= lo) break;
      if (cEnd > cursor) continue; // still running at the point reached: parallel work
      add(n, cEnd, cursor);
      work.push([c, cStart, cEnd]);
      cursor = cStart;
    }
    add(n, lo, cursor);
  }
  for (const segs of out.values()) segs.sort((a, b) => a[0] - b[0]);
  return out;
}

/**
 * Rows to show given collapsed spans: the depth-first order minus descendants of collapsed.
 * @param {SpanNode[]} nodes @param {Set<string>} collapsed
 */
export function visibleRows(nodes, collapsed) {
  if (!collapsed.size) return nodes;
  const out = [];
  for (let i = 0; i < nodes.length; i++) {
    const n = nodes[i];
    out.push(n);
    if (collapsed.has(n.id)) i += n.descendants;
  }
  return out;
}
