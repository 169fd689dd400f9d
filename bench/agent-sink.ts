// A stand-in for the linker in bench/agent-overhead.sh: accepts POST /v1/bpftracing (brotli, gzip),
// counts the spans (lines) and answers like the linker, spending as little CPU as it can, so
// that the agent's figures are not disturbed by the linker's own work (≈ 30–50 µs per span on
// the CPU the bench shares with wrk). GET /metrics shows seqtrace_spans_accepted_total.
// Prints its base URL on stdout.
//
//   node --import tsx bench/agent-sink.ts [port=0] [--no-inflate]
// --no-inflate: counts bytes and posts only, answering {"accepted":0} (the spans uncounted):
// the linker's inflating of each second's batch (megabytes at 10,000 spans a second) then does
// not run on the CPU the bench shares with the agent.
import { createServer } from 'node:http';
import { brotliDecompress, gunzip } from 'node:zlib';
import type { AddressInfo } from 'node:net';

const inflate = !process.argv.includes('--no-inflate');
let accepted = 0;
let posts = 0;
let bytes = 0;
const srv = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/metrics') {
    res.end(`seqtrace_spans_accepted_total ${accepted}\nseqtrace_sink_posts_total ${posts}\nseqtrace_sink_bytes_total ${bytes}\n`);
    return;
  }
  if (req.method !== 'POST' || !req.url?.endsWith('/v1/bpftracing')) {
    res.writeHead(404).end();
    return;
  }
  const parts: Buffer[] = [];
  req.on('data', (d: Buffer) => parts.push(d));
  req.on('end', () => {
    const body = Buffer.concat(parts);
    const encoding = req.headers['content-encoding'];
    const done = (err: Error | null, text: Buffer) => {
      if (err) { res.writeHead(400).end(err.message); return; }
      let n = 0;
      for (let i = text.indexOf(10); i >= 0; i = text.indexOf(10, i + 1)) n++;
      accepted += n;
      posts++;
      bytes += body.length;
      res.writeHead(200, { 'content-type': 'application/json' }).end(`{"accepted":${n},"rejected":0,"errors":[]}`);
    };
    if (!inflate) done(null, Buffer.alloc(0));
    else if (encoding === 'gzip') gunzip(body, done);
    else if (encoding === 'br') brotliDecompress(body, done);
    else done(null, body);
  });
});
srv.listen(Number(process.argv.slice(2).find((a) => !a.startsWith('--')) ?? 0), '127.0.0.1', () => {
  console.log(`http://127.0.0.1:${(srv.address() as AddressInfo).port}`);
});
process.on('SIGTERM', () => srv.close(() => process.exit(0)));
