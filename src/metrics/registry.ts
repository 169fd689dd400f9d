// A tiny Prometheus text-format registry (exposition format 0.0.4), shared by the linker
// and the agent. Counters are plain numbers bumped on hot paths; gauges and counters owned
// by another component are read by callbacks at scrape time, so nothing is copied per event.

export type Labels = Record<string, string>;

interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  /** Series by label text (`{a="b"}` or ''). */
  series: Map<string, { labels: string; value: number }>;
  collect?: () => number | [Labels, number][];
}

export interface Counter {
  inc(n?: number, labels?: Labels): void;
  get(labels?: Labels): number;
}

export interface Gauge {
  set(v: number, labels?: Labels): void;
  get(labels?: Labels): number;
}

export interface Registry {
  counter(name: string, help: string): Counter;
  gauge(name: string, help: string): Gauge;
  /** A metric whose value is read when scraped: one number, or one per label set. */
  collect(name: string, help: string, type: 'counter' | 'gauge', read: () => number | [Labels, number][]): void;
  /** Everything in Prometheus text format. */
  render(): string;
}

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labelText(labels?: Labels): string {
  if (!labels) return '';
  const keys = Object.keys(labels);
  if (keys.length === 0) return '';
  return `{${keys.sort().map((k) => `${k}="${escapeLabel(labels[k])}"`).join(',')}}`;
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

export function createRegistry(): Registry {
  const families = new Map<string, Family>();

  function family(name: string, help: string, type: 'counter' | 'gauge'): Family {
    if (!NAME.test(name)) throw new Error(`invalid metric name ${JSON.stringify(name)}`);
    if (families.has(name)) throw new Error(`metric ${name} registered twice`);
    const f: Family = { name, help, type, series: new Map() };
    families.set(name, f);
    return f;
  }

  function slot(f: Family, labels?: Labels) {
    const key = labelText(labels);
    let s = f.series.get(key);
    if (!s) {
      s = { labels: key, value: 0 };
      f.series.set(key, s);
    }
    return s;
  }

  return {
    counter(name, help) {
      const f = family(name, help, 'counter');
      const plain = slot(f); // the unlabelled series exists from the start (reads 0)
      return {
        inc(n = 1, labels) {
          if (n < 0) throw new Error(`counter ${name} cannot decrease`);
          (labels ? slot(f, labels) : plain).value += n;
        },
        get: (labels) => (labels ? slot(f, labels) : plain).value,
      };
    },
    gauge(name, help) {
      const f = family(name, help, 'gauge');
      const plain = slot(f);
      return {
        set(v, labels) {
          (labels ? slot(f, labels) : plain).value = v;
        },
        get: (labels) => (labels ? slot(f, labels) : plain).value,
      };
    },
    collect(name, help, type, read) {
      family(name, help, type).collect = read;
    },
    render() {
      let out = '';
      for (const f of families.values()) {
        out += `# HELP ${f.name} ${f.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}\n# TYPE ${f.name} ${f.type}\n`;
        if (f.collect) {
          let v: number | [Labels, number][];
          try {
            v = f.collect();
          } catch {
            v = NaN; // a failing source must not break the whole scrape
          }
          if (typeof v === 'number') out += `${f.name} ${formatValue(v)}\n`;
          else for (const [labels, n] of v) out += `${f.name}${labelText(labels)} ${formatValue(n)}\n`;
          continue;
        }
        for (const s of f.series.values()) out += `${f.name}${s.labels} ${formatValue(s.value)}\n`;
      }
      return out;
    },
  };
}
