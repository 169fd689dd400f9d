// The HTTP exchanges the agent benches feed it, defined once.
// wrk: what bench/agent-overhead.sh produces (wrk's two-line GET, Go net/http's 6-byte answer).
// rich: a request with a traceparent and several headers, a 512-byte JSON answer.

export interface Exchange {
  req: Buffer;
  resp: Buffer;
}

export const WRK: Exchange = {
  req: Buffer.from('GET / HTTP/1.1\r\nHost: 127.0.0.1:40123\r\n\r\n', 'latin1'),
  resp: Buffer.from('HTTP/1.1 200 OK\r\nDate: Wed, 25 Nov 2026 10:00:00 GMT\r\nContent-Length: 6\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\n', 'latin1'),
};

export const RICH: Exchange = {
  req: Buffer.from(
    'GET /api/users/12345?expand=orders HTTP/1.1\r\nHost: users.internal:8080\r\nUser-Agent: python-requests/2.31\r\n' +
    'Accept: application/json\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n' +
    'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nAuthorization: Bearer abc.def.ghi\r\n\r\n',
    'latin1',
  ),
  resp: Buffer.from(
    'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 512\r\nDate: Wed, 25 Nov 2026 04:00:00 GMT\r\nServer: gunicorn\r\n\r\n' +
    '{"id":12345,"name":"x"' + ' '.repeat(512 - 23) + '}',
    'latin1',
  ),
};
