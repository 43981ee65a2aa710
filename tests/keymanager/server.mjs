#!/usr/bin/env node
// Demo key manager for keygate: a real OpenID provider (npm oidc-provider) on 127.0.0.1.
//
//   node server.mjs [--port P] [--keys FILE] [--data FILE]
//
// --port 0 picks a free port. Prints `KEYMANAGER READY <issuer>` once listening. Admin endpoints
// (loopback only): POST /admin/rotate, POST /admin/retire, GET /admin/keys.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';

import { SigningKeys } from './keys.mjs';
import { buildProvider, newCookieKeys } from './provider.mjs';
import { interaction } from './interaction.mjs';

const HOST = '127.0.0.1';
const here = dirname(fileURLToPath(import.meta.url));

function fail(message) {
  process.stderr.write(`keymanager: ${message}\n`);
  process.exit(2);
}

function parseCli() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        port: { type: 'string', default: process.env.KEYMANAGER_PORT ?? '9000' },
        keys: { type: 'string' },
        data: { type: 'string', default: join(here, 'demo-data.json') },
      },
    }));
  } catch (err) {
    fail(err.message);
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`--port: not a port number: ${values.port}`);
  return { port, keysFile: values.keys, dataFile: values.data };
}

function isLoopback(address) {
  return address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1';
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(text);
}

const { port, keysFile, dataFile } = parseCli();
const data = JSON.parse(readFileSync(dataFile, 'utf8'));
const keys = await SigningKeys.loadOrGenerate(keysFile);
const cookieKeys = newCookieKeys();

let issuer;
let handler;
let current;

// A Provider's keystore is fixed when it is built, so key changes swap in a new Provider.
// Requests already inside the old one finish there; the next request sees the new keys.
function rebuild() {
  const provider = buildProvider(issuer, data, keys, cookieKeys);
  provider.on('server_error', (ctx, err) => process.stderr.write(`keymanager: server_error: ${err.message}\n`));
  provider.on('grant.success', (ctx) => {
    // Which client got a token and which key signed it; never the token itself.
    const user = ctx.oidc.params.username ? ` user=${ctx.oidc.params.username}` : '';
    process.stderr.write(`keymanager: token issued grant=${ctx.oidc.params.grant_type} client=${ctx.oidc.client?.clientId}${user} kid=${keys.signer}\n`);
  });
  handler = provider.callback();
  current = provider;
}

async function admin(req, res) {
  if (!isLoopback(req.socket.remoteAddress)) {
    sendJson(res, 403, { error: 'forbidden', error_description: 'admin endpoints are loopback only' });
    return;
  }
  const route = `${req.method} ${req.url.split('?')[0]}`;
  switch (route) {
    case 'GET /admin/keys':
      sendJson(res, 200, keys.describe());
      return;
    case 'POST /admin/rotate': {
      const kid = await keys.rotate();
      rebuild();
      process.stderr.write(`keymanager: rotated, signer now ${kid}\n`);
      sendJson(res, 200, keys.describe());
      return;
    }
    case 'POST /admin/retire': {
      const removed = keys.retire();
      rebuild();
      process.stderr.write(`keymanager: retired ${removed} key(s), signer ${keys.signer}\n`);
      sendJson(res, 200, { ...keys.describe(), removed });
      return;
    }
    default:
      sendJson(res, 404, { error: 'not_found', error_description: `no admin route ${route}` });
  }
}

const server = createServer((req, res) => {
  if (req.url.startsWith('/admin/')) {
    req.resume();
    admin(req, res).catch((err) => {
      process.stderr.write(`keymanager: admin request failed: ${err.message}\n`);
      sendJson(res, 500, { error: 'server_error', error_description: 'admin request failed' });
    });
    return;
  }
  if (req.url.startsWith('/interaction/')) {
    interaction(current, data, req, res).then((handled) => {
      if (!handled) sendJson(res, 404, { error: 'not_found', error_description: 'no such interaction path' });
    }).catch((err) => {
      process.stderr.write(`keymanager: interaction failed: ${err.message}\n`);
      if (!res.headersSent) sendJson(res, 400, { error: 'invalid_request', error_description: 'the sign-in could not continue; start again' });
    });
    return;
  }
  handler(req, res);
});

server.on('error', (err) => fail(`cannot listen on ${HOST}:${port}: ${err.message}`));
server.listen(port, HOST, () => {
  issuer = `http://${HOST}:${server.address().port}`;
  rebuild();
  process.stdout.write(`KEYMANAGER READY ${issuer}\n`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
