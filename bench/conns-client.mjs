// Client of bench/agent-conns.sh: opens N keep-alive connections to 127.0.0.1:PORT, makes one
// GET on each (every other request's head written in two pieces, a moment apart, so that the
// server reads it in two calls), keeps them open, prints "open ..." once all are answered, and
// closes them all when its stdin ends.
//   node bench/conns-client.mjs PORT N
import net from 'node:net';

const [port, n] = process.argv.slice(2).map(Number);
const head = (k) => `GET /conn/${k} HTTP/1.1\r\nHost: bench\r\nUser-Agent: conns-client\r\nAccept: */*\r\n\r\n`;
const socks = [];
let answered = 0;
let failed = 0;
const t0 = Date.now();

function open(k) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', noDelay: true });
    let got = '';
    s.on('error', () => { failed++; resolve(); });
    s.on('connect', () => {
      const h = head(k);
      if (k % 2) s.write(h);
      else {
        s.write(h.slice(0, 20));
        setTimeout(() => s.write(h.slice(20)), 5);
      }
    });
    s.on('data', (d) => {
      got += d.toString('latin1');
      if (got.includes('\r\n\r\n')) { answered++; resolve(); }
    });
    socks.push(s);
  });
}

// a few hundred at a time: the server's accept queue, and the agent's ring buffer, not flooded
for (let k = 0; k < n; k += 500) {
  await Promise.all(Array.from({ length: Math.min(500, n - k) }, (_, i) => open(k + i)));
}
console.log(`open ${socks.length - failed} connections, ${answered} answered, ${failed} failed, in ${Date.now() - t0} ms`);
process.stdin.resume();
process.stdin.on('end', () => {
  for (const s of socks) s.destroy();
  process.exit(0);
});
