// uwsgi requests as nginx writes them (uwsgi_pass with Debian's uwsgi_params), for the parser's
// and the connection table's tests.

/** A vars block: each key and value with its u16 LE length before it. */
export function vars(v: Record<string, string>): Buffer {
  return Buffer.concat(Object.entries(v).flatMap(([k, val]) => {
    const kb = Buffer.from(k, 'latin1'), vb = Buffer.from(val, 'latin1');
    const kl = Buffer.alloc(2), vl = Buffer.alloc(2);
    kl.writeUInt16LE(kb.length);
    vl.writeUInt16LE(vb.length);
    return [kl, kb, vl, vb];
  }));
}

export const NGINX_VARS = {
  QUERY_STRING: 'x=1', REQUEST_METHOD: 'GET', CONTENT_TYPE: '', CONTENT_LENGTH: '', REQUEST_URI: '/shop/cart?x=1',
  PATH_INFO: '/shop/cart', DOCUMENT_ROOT: '/usr/share/nginx/html', SERVER_PROTOCOL: 'HTTP/1.1', REQUEST_SCHEME: 'http',
  REMOTE_ADDR: '127.0.0.1', REMOTE_PORT: '51234', SERVER_PORT: '8080', SERVER_NAME: 'shop', HTTP_HOST: 'shop.example',
  HTTP_USER_AGENT: 'Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0',
  HTTP_ACCEPT: 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8',
  HTTP_ACCEPT_LANGUAGE: 'en-GB,en;q=0.5', HTTP_COOKIE: `session=${'s'.repeat(300)}`,
  HTTP_TRACEPARENT: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', HTTP_X_REQUEST_ID: 'rid-42',
};

/** A request packet: modifier1 0 (WSGI), the vars' size, modifier2 0; the vars; the body. */
export function request(v: Record<string, string> = NGINX_VARS, body = Buffer.alloc(0), modifier1 = 0): Buffer {
  const vb = vars(body.length ? { ...v, CONTENT_LENGTH: String(body.length) } : v);
  const h = Buffer.from([modifier1, 0, 0, 0]);
  h.writeUInt16LE(vb.length, 1);
  return Buffer.concat([h, vb, body]);
}
