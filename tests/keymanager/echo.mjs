#!/usr/bin/env node
// Echo upstream for the keygate demo: answers every request 200 with a JSON description of what it
// received, so a caller can see which headers the gateway forwarded.
//
//   node echo.mjs [--port P]     (P=0 picks a free port; prints `ECHO READY http://127.0.0.1:<port>`)
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

const HOST = '127.0.0.1';

let port;
try {
  const { values } = parseArgs({ options: { port: { type: 'string', default: process.env.ECHO_PORT ?? '3000' } } });
  port = Number(values.port);
} catch (err) {
  process.stderr.write(`echo: ${err.message}\n`);
  process.exit(2);
}
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write('echo: --port: not a port number\n');
  process.exit(2);
}

const server = createServer((req, res) => {
  // Drain the body: only the request line and headers are echoed.
  req.resume();
  req.on('end', () => {
    const headers = {};
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i].toLowerCase();
      const value = req.rawHeaders[i + 1];
      headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
    }
    const body = JSON.stringify({ method: req.method, path: req.url, headers });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
});

server.on('error', (err) => {
  process.stderr.write(`echo: cannot listen on ${HOST}:${port}: ${err.message}\n`);
  process.exit(2);
});
server.listen(port, HOST, () => {
  process.stdout.write(`ECHO READY http://${HOST}:${server.address().port}\n`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
