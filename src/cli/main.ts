// seqtrace linker | agent | all-in-one --config FILE
// One binary; the role comes from the command. A bad configuration exits 2 with the
// SEQ_ERR_CONFIG message on stderr; a failure at start exits 1.
import { Command } from 'commander';
import { SeqError } from '../errors.js';
import { checkAgentCanTrace, loadConfig, type AgentConfig, type Config } from '../config/config.js';
import type { LinkerHandle } from '../linker/service.js';

interface Running {
  close(): Promise<void>;
}

function fail(e: unknown): never {
  if (e instanceof SeqError) {
    process.stderr.write(`seqtrace: ${e.code}: ${e.message}\n`);
    process.exit(e.code === 'SEQ_ERR_CONFIG' || e.code === 'SEQ_ERR_CONFIG_FILE' ? 2 : 1);
  }
  process.stderr.write(`seqtrace: ${(e as Error)?.stack ?? String(e)}\n`);
  process.exit(1);
}

function config(file: string | undefined): Config {
  try {
    return loadConfig({ file });
  } catch (e) {
    fail(e);
  }
}

/** The agent lives in src/agent/service.ts; loaded on demand so the linker runs without it. */
async function startAgent(cfg: AgentConfig): Promise<Running> {
  const path = '../agent/service.js';
  const mod = await import(path);
  if (typeof mod.startAgent !== 'function') throw new Error('src/agent/service.ts does not export startAgent');
  return mod.startAgent(cfg);
}

/** Stops cleanly on SIGTERM/SIGINT: stop accepting, commit what is ready, close storage. */
function stopOnSignals(parts: Running[]): void {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`seqtrace: ${signal}: stopping\n`);
    try {
      for (const p of parts) await p.close();
      process.exit(0);
    } catch (e) {
      fail(e);
    }
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

async function runLinker(cfg: Config): Promise<LinkerHandle> {
  // Loaded here, not at the top: `seqtrace agent` never needs the linker's modules (fastify,
  // better-sqlite3, protobufjs), and loading them cost the agent ~20 MiB of its start-up peak.
  const [{ describeExportConfig, loadExportConfig }, { createOtlpExporter }, { startLinker }] = await Promise.all([
    import('../export/config.js'), import('../export/otlp-exporter.js'), import('../linker/service.js'),
  ]);
  // OTLP export from the standard OTEL_EXPORTER_OTLP_* variables; none set: no export queue.
  const exportCfg = loadExportConfig(process.env);
  const linker = await startLinker(cfg.linker, exportCfg ? { exporter: (q) => createOtlpExporter(exportCfg, q) } : {});
  process.stderr.write(`seqtrace linker: ${describeExportConfig(exportCfg)}\n`);
  const where = linker.queryUrl === linker.url ? '' : `, query API and UI on ${linker.queryUrl}`;
  process.stderr.write(`seqtrace linker: ingest on ${linker.url}/v1/bpftracing${where}, storage in ${cfg.linker.sqlite_path}\n`);
  return linker;
}

const program = new Command();
program.name('seqtrace').description('Zero-code distributed tracing from eBPF').showHelpAfterError();

program.command('linker')
  .description('receive spans from agents, link them into traces, store, export, serve the query API and UI')
  .option('-c, --config <file>', 'TOML configuration ([[inputs.ebpftrace]]); ENV_* variables override it')
  .action(async (o: { config?: string }) => {
    try {
      stopOnSignals([await runLinker(config(o.config))]);
    } catch (e) {
      fail(e);
    }
  });

program.command('agent')
  .description('capture HTTP exchanges with eBPF on this host and send spans to the linker')
  .option('-c, --config <file>', 'TOML configuration ([[inputs.ebpf]]); ENV_* variables override it')
  .action(async (o: { config?: string }) => {
    try {
      const cfg = config(o.config);
      checkAgentCanTrace(cfg.agent);
      stopOnSignals([await startAgent(cfg.agent)]);
    } catch (e) {
      fail(e);
    }
  });

program.command('all-in-one')
  .description('linker, agent and UI in one process, the agent sending to the local linker')
  .option('-c, --config <file>', 'TOML configuration with [[inputs.ebpftrace]] and [[inputs.ebpf]]')
  .action(async (o: { config?: string }) => {
    try {
      const cfg = config(o.config);
      checkAgentCanTrace(cfg.agent);
      const linker = await runLinker(cfg);
      let agent: Running;
      try {
        agent = await startAgent({ ...cfg.agent, trace_server: linker.url });
      } catch (e) {
        await linker.close();
        throw e;
      }
      // The agent first, so that its last spans reach the linker before the linker stops.
      stopOnSignals([agent, linker]);
    } catch (e) {
      fail(e);
    }
  });

program.parseAsync(process.argv).catch(fail);
