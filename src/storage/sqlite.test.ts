import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BASE_US, chainTrace, storeConformance, type ConformanceTarget } from './conformance.js';
import { openSqliteStore } from './sqlite.js';

const BIG = Number.MAX_SAFE_INTEGER;

function sqliteTarget(): ConformanceTarget {
  const dir = mkdtempSync(join(tmpdir(), 'seqtrace-store-'));
  return {
    open: (limits) => openSqliteStore(join(dir, 'db'), {
      retentionMaxAgeMs: limits?.retentionMaxAgeMs ?? BIG,
      retentionMaxBytes: limits?.retentionMaxBytes ?? BIG,
      sweepIntervalMs: 0,
    }),
    destroy: () => rmSync(dir, { recursive: true, force: true }),
  };
}

storeConformance('sqlite', sqliteTarget);
