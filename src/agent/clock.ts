// Kernel event times are CLOCK_MONOTONIC nanoseconds; spans carry epoch microseconds.
// process.hrtime.bigint() reads CLOCK_MONOTONIC too, so epoch = ts - monoNow + realNow. The
// offset is measured once and refreshed (NTP slews the wall clock, not the monotonic one).

export interface Clock {
  /** Epoch microseconds of a CLOCK_MONOTONIC nanosecond time (an event's, capture/event.ts). */
  epochUs(tsNs: number): number;
  /** Re-measure the offset between the two clocks. */
  refresh(): void;
}

/** The two clocks the offset is read from (tests give their own). */
export interface ClockSources {
  monoNs(): bigint;
  /** Wall clock, whole milliseconds (Date.now()). */
  realMs(): number;
}

const SYSTEM: ClockSources = { monoNs: () => process.hrtime.bigint(), realMs: () => Date.now() };

/** A step of the wall clock seen within this much monotonic time is taken at once. */
const GOOD_WINDOW_NS = 20_000n;
/** Steps watched at most per measurement when the windows are wider (the process paused). */
const ATTEMPTS = 5;

/**
 * Nanoseconds to add to a monotonic time to get the wall clock. Date.now() has millisecond
 * steps, so the offset is read at a step: the wall clock reached a new millisecond after the
 * last read that still gave the old one and before the first read that gives the new one. Both
 * reads are bracketed by monotonic reads, and the step is placed in the middle of that window.
 * A pause of this process between the reads (milliseconds on a busy host: a two-host test once
 * put one agent's spans 4 ms off) widens the window; then further steps are watched and the
 * narrowest window is used.
 */
export function clockOffsetNs(src: ClockSources = SYSTEM): bigint {
  let best: { offset: bigint; width: bigint } | undefined;
  let fallback = 0n;
  for (let i = 0; i < ATTEMPTS; i++) {
    let lastBefore = src.monoNs(); // before the last read that gave t0
    const t0 = src.realMs();
    fallback = BigInt(t0) * 1_000_000n - lastBefore;
    const deadline = lastBefore + 3_000_000n;
    let real = t0;
    let after = lastBefore;
    for (;;) {
      const before = src.monoNs();
      real = src.realMs();
      after = src.monoNs();
      if (real !== t0 || after > deadline) break;
      lastBefore = before;
    }
    if (real === t0) continue; // no step in 3 ms: a wall clock that stands still
    const width = after - lastBefore;
    const offset = BigInt(real) * 1_000_000n - (lastBefore + width / 2n);
    if (!best || width < best.width) best = { offset, width };
    if (width <= GOOD_WINDOW_NS) break;
  }
  return best ? best.offset : fallback;
}

export function createClock(src: ClockSources = SYSTEM): Clock {
  // The offset is kept in whole microseconds (rounded; the pair of clocks is read to a few
  // µs anyway), so that epoch µs = whole µs of the event time + offsetUs, exactly.
  let offsetUs = 0;
  function refresh(): void {
    const ns = clockOffsetNs(src);
    offsetUs = Number((ns + (ns < 0n ? -500n : 500n)) / 1000n);
  }
  refresh();
  return {
    epochUs: (tsNs) => (tsNs - (tsNs % 1000)) / 1000 + offsetUs,
    refresh,
  };
}
