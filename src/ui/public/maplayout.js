// @ts-check
// Layered layout of the service graph: callers left of callees (longest path from the
// entry services, cycles broken), nodes ordered in a column by the mean position of their
// neighbours to keep edges from crossing. Pure function; the SVG is drawn in map.js.

/**
 * @param {string[]} services
 * @param {{parent: string, child: string}[]} edges
 * @returns {Map<string, {layer: number, order: number}>}
 */
export function layoutGraph(services, edges) {
  /** @type {Map<string, string[]>} */
  const out = new Map(services.map((s) => [s, []]));
  /** @type {Map<string, string[]>} */
  const inc = new Map(services.map((s) => [s, []]));
  for (const e of edges) {
    if (e.parent === e.child) continue;
    out.get(e.parent)?.push(e.child);
    inc.get(e.child)?.push(e.parent);
  }
  // Break cycles: DFS from the sources (then from anything unvisited); an edge to a node
  // on the current DFS path is a back edge and is ignored for layering.
  const state = new Map(); // 1 on path, 2 done
  /** @type {Set<string>} */
  const back = new Set();
  const starts = services.filter((s) => !inc.get(s)?.length);
  const rest = services.slice().sort((a, b) => (out.get(b)?.length ?? 0) - (out.get(a)?.length ?? 0));
  for (const s0 of [...starts, ...rest]) {
    if (state.has(s0)) continue;
    /** @type {[string, number][]} */
    const stack = [[s0, 0]];
    state.set(s0, 1);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const kids = out.get(top[0]) ?? [];
      if (top[1] < kids.length) {
        const k = kids[top[1]++];
        if (state.get(k) === 1) back.add(`${top[0]}\u0000${k}`);
        else if (!state.has(k)) { state.set(k, 1); stack.push([k, 0]); }
      } else { state.set(top[0], 2); stack.pop(); }
    }
  }
  // Longest-path layers over the acyclic edges (Kahn's order).
  /** @type {Map<string, number>} */
  const layer = new Map(services.map((s) => [s, 0]));
  const indeg = new Map(services.map((s) => [s, 0]));
  for (const [p, ks] of out) for (const k of ks) if (!back.has(`${p}\u0000${k}`)) indeg.set(k, (indeg.get(k) ?? 0) + 1);
  const queue = services.filter((s) => !indeg.get(s));
  while (queue.length) {
    const p = /** @type {string} */ (queue.shift());
    for (const k of out.get(p) ?? []) {
      if (back.has(`${p}\u0000${k}`)) continue;
      layer.set(k, Math.max(layer.get(k) ?? 0, (layer.get(p) ?? 0) + 1));
      indeg.set(k, (indeg.get(k) ?? 0) - 1);
      if (!indeg.get(k)) queue.push(k);
    }
  }
  /** @type {string[][]} */
  const cols = [];
  for (const s of services) (cols[layer.get(s) ?? 0] ??= []).push(s);
  for (const c of cols) c?.sort();
  /** @type {Map<string, number>} */
  const pos = new Map();
  const setPos = () => cols.forEach((c) => c?.forEach((s, i) => pos.set(s, i)));
  setPos();
  const mean = (/** @type {string[]} */ ns, /** @type {number} */ dflt) => (ns.length ? ns.reduce((a, n) => a + (pos.get(n) ?? 0), 0) / ns.length : dflt);
  for (let sweep = 0; sweep < 4; sweep++) {
    for (const c of sweep % 2 ? cols.slice().reverse() : cols) {
      if (!c) continue;
      const key = new Map(c.map((s, i) => [s, mean(sweep % 2 ? out.get(s) ?? [] : inc.get(s) ?? [], i)]));
      c.sort((a, b) => (key.get(a) ?? 0) - (key.get(b) ?? 0));
      setPos();
    }
  }
  const res = new Map();
  cols.forEach((c, l) => c?.forEach((s, i) => res.set(s, { layer: l, order: i })));
  return res;
}
