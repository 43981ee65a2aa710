// DPoP material for envoy/bench/dpop.sh: a P-256 client key made here, a DPoP-bound access token
// from the demo key manager (its token endpoint, with a proof), and COUNT request proofs (unique
// jti, iat now, ath of the token), one per line, so the load generator never repeats a proof.
//
//   node dpop-proofs.mjs ISSUER HTU COUNT OUT_DIR   → OUT_DIR/token, OUT_DIR/proofs
import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { writeFileSync } from 'node:fs';

const [issuer, htu, count, out] = process.argv.slice(2);
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const { kty, crv, x, y } = publicKey.export({ format: 'jwk' });
const header = Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'ES256', jwk: { kty, crv, x, y } })).toString('base64url');

function proof(htm, url, extra) {
  const claims = { jti: randomBytes(12).toString('base64url'), htm, htu: url, iat: Math.floor(Date.now() / 1000), ...extra };
  const input = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  const signature = sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${signature.toString('base64url')}`;
}

const basic = Buffer.from('shop-app:shop-app-secret').toString('base64');
const reply = await fetch(`${issuer}/token`, {
  method: 'POST',
  headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded', dpop: proof('POST', `${issuer}/token`, {}) },
  body: 'grant_type=client_credentials&scope=pets%3Aread',
});
const body = await reply.json();
if (reply.status !== 200 || body.token_type !== 'DPoP') {
  process.stderr.write(`token endpoint: ${reply.status} ${JSON.stringify(body)}\n`);
  process.exit(1);
}
const token = body.access_token;
const ath = createHash('sha256').update(token).digest('base64url');
const lines = [];
for (let i = 0; i < Number(count); i += 1) lines.push(proof('GET', htu, { ath }));
writeFileSync(`${out}/token`, token);
writeFileSync(`${out}/proofs`, `${lines.join('\n')}\n`);
