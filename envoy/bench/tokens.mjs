#!/usr/bin/env node
// Benchmark tokens from one token the demo key manager issued (RS256):
//
//   node tokens.mjs KEYS_FILE RS256_TOKEN
//
// prints a JSON object {es256, rs256_forged, es256_forged}. `es256` carries the same header fields and
// claims, signed ES256 with the key manager's published EC key (the demo key manager signs RS256
// only, but publishes an EC P-256 key; KEYS_FILE is its key state, private keys included).
// The forged tokens name a published kid but are signed by a key generated here, so a filter that
// really verifies signatures refuses them.
import { readFileSync } from 'node:fs';
import { createPrivateKey, generateKeyPairSync, sign } from 'node:crypto';

const [keysFile, rsToken] = process.argv.slice(2);
if (!keysFile || !rsToken) {
  process.stderr.write('usage: node tokens.mjs KEYS_FILE RS256_TOKEN\n');
  process.exit(2);
}
const state = JSON.parse(readFileSync(keysFile, 'utf8'));
const [rsHeaderB64, payloadB64] = rsToken.split('.');
const rsHeader = JSON.parse(Buffer.from(rsHeaderB64, 'base64url').toString('utf8'));
const ec = state.keys.find((k) => k.kty === 'EC' && k.crv === 'P-256');
if (!ec) {
  process.stderr.write(`tokens: ${keysFile} has no EC P-256 key\n`);
  process.exit(1);
}

function jws(header, key, alg) {
  const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${payloadB64}`;
  const options = alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key;
  return `${input}.${sign('sha256', Buffer.from(input), options).toString('base64url')}`;
}

const esHeader = { ...rsHeader, alg: 'ES256', kid: ec.kid };
const ecKey = createPrivateKey({ key: ec, format: 'jwk' });
const strangerRsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const strangerEc = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

process.stdout.write(`${JSON.stringify({
  es256: jws(esHeader, ecKey, 'ES256'),
  rs256_forged: jws(rsHeader, strangerRsa, 'RS256'),
  es256_forged: jws(esHeader, strangerEc, 'ES256'),
})}\n`);
