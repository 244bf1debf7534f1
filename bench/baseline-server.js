// The baseline: a bare node:http server answering a fixed body of a given size, the upper bound of what
// any Node HTTP server can do here. Usage: node bench/baseline-server.js BYTES; prints "listening PORT".
import { createServer } from 'node:http';

const size = Number(process.argv[2] ?? 1000);
const body = Buffer.from(JSON.stringify({ pad: 'x'.repeat(Math.max(0, size - 10)) }));
const server = createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length, 'cache-control': 'public, max-age=3600' });
  res.end(body);
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`listening ${server.address().port}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
