// Kernel event times are CLOCK_MONOTONIC nanoseconds; spans carry epoch microseconds.
// process.hrtime.bigint() reads CLOCK_MONOTONIC too, so epoch = ts - monoNow + realNow. The
// offset is measured once and refreshed (NTP slews the wall clock, not the monotonic one).

export interface Clock {
  /** Epoch microseconds of a CLOCK_MONOTONIC nanosecond time. */
  epochUs(tsNs: bigint): number;
  /** Re-measure the offset between the two clocks. */
  refresh(): void;
  /** Current CLOCK_MONOTONIC nanoseconds. */
  monoNowNs(): bigint;
}

// Event times below 2^53 ns (104 days of uptime) are exact as doubles: converted without a
// BigInt (two were allocated per conversion, four per span). Beyond, the BigInt path.
const SAFE_NS = BigInt(Number.MAX_SAFE_INTEGER);

export function createClock(): Clock {
  // The offset is kept in whole microseconds (rounded; the pair of clocks is read to a few
  // µs anyway), so that epoch µs = whole µs of the event time + offsetUs, exactly.
  let offsetNs = 0n;
  let offsetUs = 0;
  function refresh(): void {
    // Date.now() has millisecond steps: wait for one (≤ 1 ms) so the pair is taken at a tick
    // and the offset is good to a few µs instead of up to a millisecond.
    const t0 = Date.now();
    let real = t0;
    let mono = process.hrtime.bigint();
    const deadline = mono + 2_000_000n;
    while (real === t0 && mono < deadline) {
      mono = process.hrtime.bigint();
      real = Date.now();
    }
    offsetUs = Number((BigInt(real) * 1_000_000n - mono + 500n) / 1000n);
    offsetNs = BigInt(offsetUs) * 1000n;
  }
  refresh();
  return {
    epochUs(tsNs) {
      if (tsNs > SAFE_NS || tsNs < 0n) return Number((tsNs + offsetNs) / 1000n);
      const ns = Number(tsNs);
      return (ns - (ns % 1000)) / 1000 + offsetUs;
    },
    refresh,
    monoNowNs: () => process.hrtime.bigint(),
  };
}
