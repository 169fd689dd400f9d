// The reference tables of docs/configuration.md, made from the schema so that the doc can
// never drift from the code: `node --import tsx src/config/reference.ts` prints them and
// config docs test compares.
import { AGENT_KEYS, LINKER_KEYS } from './config.js';

interface Def { kind: string; default: unknown; env?: string; doc: string }

function showDefault(d: Def): string {
  const v = d.default;
  if (d.kind === 'duration') {
    const ms = v as number;
    for (const [unit, n] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) if (ms > 0 && ms % n === 0) return `"${ms / n}${unit}"`;
    return `"${ms}ms"`;
  }
  if (d.kind === 'bytes') {
    const b = v as number;
    for (const [unit, n] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) if (b > 0 && b % n === 0) return `"${b / n}${unit}"`;
    return String(b);
  }
  return JSON.stringify(v);
}

export function configReference(): string {
  const out: string[] = [];
  for (const [table, keys] of [['inputs.ebpftrace', LINKER_KEYS], ['inputs.ebpf', AGENT_KEYS]] as const) {
    out.push(`### \`[[${table}]]\``, '', '| key | environment variable | default | meaning |', '| --- | --- | --- | --- |');
    for (const [key, def] of Object.entries(keys) as [string, Def][]) {
      out.push(`| \`${key}\` | \`${def.env ?? ''}\` | \`${showDefault(def)}\` | ${def.doc.replace(/\|/g, '\\|')} |`);
    }
    out.push('');
  }
  return out.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) process.stdout.write(configReference());
