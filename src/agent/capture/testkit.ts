// Shared by the real-eBPF tests (capture, Go): events arrive asynchronously from the loader.

/** Polls get() every 20 ms until it returns something truthy; throws naming `what` after ms. */
export async function waitFor<T>(what: string, get: () => T | undefined | false, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
