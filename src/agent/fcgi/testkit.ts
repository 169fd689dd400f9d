// FastCGI messages as nginx and PHP-FPM write them, for the parser's and the connection table's tests.

export function record(type: number, content: Buffer | string = '', pad = 0, id = 1): Buffer {
  const c = typeof content === 'string' ? Buffer.from(content, 'latin1') : content;
  const h = Buffer.from([1, type, id >> 8, id & 0xff, c.length >> 8, c.length & 0xff, pad, 0]);
  return Buffer.concat([h, c, Buffer.alloc(pad)]);
}

function lenBytes(n: number): Buffer {
  if (n < 128) return Buffer.from([n]);
  const b = Buffer.alloc(4);
  b.writeUInt32BE((n | 0x80000000) >>> 0);
  return b;
}

export function params(p: Record<string, string>): Buffer {
  return Buffer.concat(Object.entries(p).flatMap(([k, v]) => [lenBytes(k.length), lenBytes(v.length), Buffer.from(k + v, 'latin1')]));
}

const BEGIN = record(1, Buffer.from([0, 1, 0, 0, 0, 0, 0, 0])); // responder, close the connection after
export const NGINX_PARAMS = {
  QUERY_STRING: 'x=1', REQUEST_METHOD: 'GET', CONTENT_TYPE: '', CONTENT_LENGTH: '', SCRIPT_NAME: '/index.php',
  REQUEST_URI: '/index.php?x=1', DOCUMENT_URI: '/index.php', DOCUMENT_ROOT: '/srv/www', SERVER_PROTOCOL: 'HTTP/1.1',
  REQUEST_SCHEME: 'http', GATEWAY_INTERFACE: 'CGI/1.1', SERVER_SOFTWARE: 'nginx/1.22.1', REMOTE_ADDR: '127.0.0.1',
  REMOTE_PORT: '51234', SERVER_ADDR: '127.0.0.1', SERVER_PORT: '8080', SERVER_NAME: 'shop', REDIRECT_STATUS: '200',
  HTTP_HOST: 'shop.example:8080', HTTP_USER_AGENT: 'Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0',
  HTTP_ACCEPT: 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8',
  HTTP_ACCEPT_LANGUAGE: 'en-GB,en;q=0.5', HTTP_COOKIE: `session=${'s'.repeat(300)}`,
  HTTP_TRACEPARENT: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', HTTP_X_REQUEST_ID: 'rid-42',
};

/** An nginx request: BEGIN_REQUEST, PARAMS (in records of at most 4 KiB), the empty PARAMS, STDIN with the body, the empty STDIN. */
export function request(p: Record<string, string> = NGINX_PARAMS, body = Buffer.alloc(0)): Buffer {
  const pb = params(p);
  const parts = [BEGIN];
  for (let i = 0; i < pb.length; i += 4096) parts.push(record(4, pb.subarray(i, i + 4096), (8 - (Math.min(4096, pb.length - i) % 8)) % 8));
  parts.push(record(4));
  for (let i = 0; i < body.length; i += 32768) parts.push(record(5, body.subarray(i, i + 32768)));
  parts.push(record(5));
  return Buffer.concat(parts);
}

/** A PHP-FPM response: STDOUT records (CGI head and body), maybe STDERR, then END_REQUEST. */
export function response(cgi: string, body = Buffer.alloc(0), stderr = ''): Buffer {
  const out = Buffer.concat([Buffer.from(cgi, 'latin1'), body]);
  const parts: Buffer[] = [];
  if (stderr) parts.push(record(7, stderr));
  for (let i = 0; i < out.length; i += 8192) parts.push(record(6, out.subarray(i, i + 8192)));
  parts.push(record(6), record(3, Buffer.from([0, 0, 0, 0, 0, 0, 0, 0])));
  return Buffer.concat(parts);
}
