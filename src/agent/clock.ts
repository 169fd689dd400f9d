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

export function createClock(): Clock {
  let offsetNs = 0n;
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
    offsetNs = BigInt(real) * 1_000_000n - mono;
  }
  refresh();
  return {
    epochUs: (tsNs) => Number((tsNs + offsetNs) / 1000n),
    refresh,
    monoNowNs: () => process.hrtime.bigint(),
  };
}
