#!/usr/bin/env node
// Benchmark tokens from one token the demo key manager issued (RS256):
//
//   node tokens.mjs KEYS_FILE RS256_TOKEN [--population N FILE]
//
// prints a JSON object {rs256, es256, rs256_forged, es256_forged}. `rs256` is the key manager's token
// made realistic: its claims (issuer, audience, client, scope, times kept) plus what an RFC 9068
// access token of a production key manager carries (`typ: at+jwt`, `jti`, `sub`, `azp`, `auth_time`,
// `acr`, `sid`, roles, user and origin claims: about 1,100 bytes in RS256 where the key manager's
// own token is about 700), re-signed with the key manager's RSA signing key (KEYS_FILE is its key
// state, private keys included). `es256` carries the same header fields and claims, signed ES256
// with the EC P-256 key the key manager publishes (it signs RS256 only).
// The forged tokens name a published kid but are signed by a key generated here, so a filter that
// really verifies signatures refuses them.
// `--population N FILE` also writes N distinct valid tokens to FILE, one per line, for the Zipf cases:
// the same claims, each with its own `jti`, `sub` and `sid`, signed ES256 with the published P-256 key
// (signing RS256 a hundred thousand times would take minutes; the cache keys by the raw token either
// way).
import { readFileSync, writeFileSync } from 'node:fs';
import { createPrivateKey, generateKeyPairSync, randomUUID, sign } from 'node:crypto';

const [keysFile, rsToken, flag, populationArg, populationFile] = process.argv.slice(2);
if (!keysFile || !rsToken) {
  process.stderr.write('usage: node tokens.mjs KEYS_FILE RS256_TOKEN\n');
  process.exit(2);
}
const state = JSON.parse(readFileSync(keysFile, 'utf8'));
const [kmHeaderB64, kmPayloadB64] = rsToken.split('.');
const kmHeader = JSON.parse(Buffer.from(kmHeaderB64, 'base64url').toString('utf8'));
const kmClaims = JSON.parse(Buffer.from(kmPayloadB64, 'base64url').toString('utf8'));
const rsa = state.keys.find((k) => k.kty === 'RSA' && k.kid === kmHeader.kid);
if (!rsa) {
  process.stderr.write(`tokens: ${keysFile} has no RSA key ${kmHeader.kid}\n`);
  process.exit(1);
}
// Claims of the shape Keycloak, WSO2 IS or Okta put in an access token; the key manager's own claims
// win, so what keygate and the native filters decide on is unchanged.
const client = kmClaims.client_id;
const claims = {
  jti: randomUUID(),
  sub: randomUUID(),
  typ: 'Bearer',
  azp: client,
  auth_time: kmClaims.iat,
  acr: '1',
  sid: randomUUID(),
  'allowed-origins': ['https://shop.example.com'],
  realm_access: { roles: ['default-roles-production', 'offline_access'] },
  preferred_username: `service-account-${client}`,
  clientHost: '10.20.30.40',
  ...kmClaims,
};
const payloadB64 = Buffer.from(JSON.stringify(claims)).toString('base64url');
const rsHeader = { alg: 'RS256', typ: 'at+jwt', kid: kmHeader.kid };
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

if (flag === '--population') {
  const n = Number(populationArg);
  if (!Number.isInteger(n) || n < 1 || !populationFile) {
    process.stderr.write('tokens: --population N FILE\n');
    process.exit(2);
  }
  const header = Buffer.from(JSON.stringify({ ...rsHeader, alg: 'ES256', kid: ec.kid })).toString('base64url');
  const lines = [];
  for (let i = 0; i < n; i++) {
    const own = { ...claims, jti: randomUUID(), sub: randomUUID(), sid: randomUUID() };
    const input = `${header}.${Buffer.from(JSON.stringify(own)).toString('base64url')}`;
    const signature = sign('sha256', Buffer.from(input), { key: ecKey, dsaEncoding: 'ieee-p1363' });
    lines.push(`${input}.${signature.toString('base64url')}`);
  }
  writeFileSync(populationFile, `${lines.join('\n')}\n`);
}

process.stdout.write(`${JSON.stringify({
  rs256: jws(rsHeader, createPrivateKey({ key: rsa, format: 'jwk' }), 'RS256'),
  es256: jws(esHeader, ecKey, 'ES256'),
  rs256_forged: jws(rsHeader, strangerRsa, 'RS256'),
  es256_forged: jws(esHeader, strangerEc, 'ES256'),
})}\n`);
