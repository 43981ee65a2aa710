// DPoP material for envoy/bench/dpop.sh and the keygate-dpop case of envoy/bench.sh: a P-256 client
// key made here, a DPoP-bound access token from the demo key manager (its token endpoint, with a
// proof), and COUNT request proofs (unique jti, iat now, ath of the token), one per line, so the
// load generator never repeats a proof.
//
//   node dpop-proofs.mjs ISSUER HTU COUNT OUT_DIR          → OUT_DIR/token, OUT_DIR/proofs (and
//                                                           OUT_DIR/client-key.json, the test key)
//   node dpop-proofs.mjs --again HTU COUNT OUT_DIR         → OUT_DIR/proofs only: fresh proofs (a new
//                                                           iat) for the same key and token
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';

const [issuer, htu, count, out] = process.argv.slice(2);
const again = issuer === '--again';
let privateKey;
if (again) {
  privateKey = createPrivateKey({ key: JSON.parse(readFileSync(`${out}/client-key.json`, 'utf8')), format: 'jwk' });
} else {
  ({ privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' }));
  writeFileSync(`${out}/client-key.json`, JSON.stringify(privateKey.export({ format: 'jwk' })), { mode: 0o600 });
}
const { kty, crv, x, y } = createPublicKey(privateKey).export({ format: 'jwk' });
const header = Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'ES256', jwk: { kty, crv, x, y } })).toString('base64url');

function proof(htm, url, extra) {
  const claims = { jti: randomBytes(12).toString('base64url'), htm, htu: url, iat: Math.floor(Date.now() / 1000), ...extra };
  const input = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  const signature = sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${signature.toString('base64url')}`;
}

let token;
if (again) {
  token = readFileSync(`${out}/token`, 'utf8');
} else {
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
  token = body.access_token;
  writeFileSync(`${out}/token`, token);
}
const ath = createHash('sha256').update(token).digest('base64url');
const lines = [];
for (let i = 0; i < Number(count); i += 1) lines.push(proof('GET', htu, { ath }));
writeFileSync(`${out}/proofs`, `${lines.join('\n')}\n`);
