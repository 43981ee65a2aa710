#!/usr/bin/env node
// keygate.wasm in V8 (Node's, the engine Envoy runs it in) behind a minimal proxy-wasm host written
// here: one request at a time through the module's own exports, so a module variant (opt-level,
// wasm-opt) can be compared by time per request, and the host calls one request makes are counted.
// Not a substitute for `make bench` (no Envoy: header maps, stats and signatures are this file's
// JavaScript), but it runs the module exactly as built, without noise from a network stack.
//
//   node bench/vm/requests.mjs [--case hit|miss|public|dpop|zipf] [--requests N] [--rounds R]
//                              [--tokens T] [--cache C] [--cache-bytes B] [--skip-verify 1]
//                              [--warmup W] [--proofs P]
//                              WASM[@ENTRIES] [WASM...]
//
// Cases: `hit` one RS256 token again and again (a verified-token cache hit); `miss` the same
// with `token_cache_entries: 0`; `dpop` a DPoP-bound token (a hit) with a fresh ES256 proof per
// request; `zipf` requests over T distinct valid tokens drawn Zipf(1.0) (hit rate reported).
// Prints one JSON line per module: best µs per request over the rounds, and the host calls per
// request by import. Signatures are checked by Node's crypto as Envoy's `verify_signature`.
import { readFileSync } from 'node:fs';
import { createPrivateKey, createPublicKey, sign, verify, randomUUID, createHash } from 'node:crypto';

const args = process.argv.slice(2);
const opt = {
  case: 'hit', requests: 20000, rounds: 5, tokens: 10000, cache: -1, 'cache-bytes': -1, 'skip-verify': 0,
  warmup: 2000, proofs: 0,
};
const wasms = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a.startsWith('--')) opt[a.slice(2)] = a.slice(2) === 'case' ? args[++i] : Number(args[++i]);
  else wasms.push(a);
}
if (wasms.length === 0) {
  process.stderr.write('usage: node bench/vm/requests.mjs [--case hit|miss|public|dpop|zipf] [--requests N] [--rounds R] WASM...\n');
  process.exit(2);
}

const NOW = Math.floor(Date.now() / 1000);
// The committed test keys (fixed, so two runs do the same setup work: see the callgrind recipe in
// docs/performance.md).
const testKeys = JSON.parse(readFileSync(new URL('../../tests/keymanager/test-signing-keys.json', import.meta.url), 'utf8')).keys;
const privateOf = (jwk) => createPrivateKey({ key: jwk, format: 'jwk' });
const rsa = { privateKey: privateOf(testKeys.find((k) => k.kty === 'RSA')) };
rsa.publicKey = createPublicKey(rsa.privateKey);
const ec = { privateKey: privateOf(testKeys.find((k) => k.kty === 'EC')) };
ec.publicKey = createPublicKey(ec.privateKey);
const rsaJwk = { ...rsa.publicKey.export({ format: 'jwk' }), kid: 'rsa1', alg: 'RS256', use: 'sig' };
const jwks = JSON.stringify({ keys: [rsaJwk] });
const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

function token(n, cnf) {
  const claims = {
    iss: 'https://idp.example', aud: 'api://pets', client_id: 'app-1', scope: 'pets:read',
    iat: NOW - 10, exp: NOW + 3600, jti: randomUUID(), sub: `user-${n}`, azp: 'app-1', typ: 'Bearer',
    auth_time: NOW - 10, acr: '1', sid: randomUUID(), 'allowed-origins': ['https://shop.example.com'],
    realm_access: { roles: ['default-roles-production', 'offline_access'] },
    preferred_username: `service-account-app-1-${n}`, clientHost: '10.20.30.40',
  };
  if (cnf) claims.cnf = cnf;
  const input = `${b64({ alg: 'RS256', typ: 'at+jwt', kid: 'rsa1' })}.${b64(claims)}`;
  return `${input}.${sign('sha256', Buffer.from(input), rsa.privateKey).toString('base64url')}`;
}

const ecJwk = ec.publicKey.export({ format: 'jwk' });
const thumb = createHash('sha256')
  .update(JSON.stringify({ crv: ecJwk.crv, kty: ecJwk.kty, x: ecJwk.x, y: ecJwk.y }))
  .digest('base64url');
function proof(tok, i) {
  const head = { typ: 'dpop+jwt', alg: 'ES256', jwk: { kty: 'EC', crv: 'P-256', x: ecJwk.x, y: ecJwk.y } };
  const body = {
    jti: `p-${i}-${randomUUID()}`, htm: 'GET', htu: 'http://api.example/pets/v1/pets', iat: NOW,
    ath: createHash('sha256').update(tok).digest('base64url'),
  };
  const input = `${b64(head)}.${b64(body)}`;
  return `${input}.${sign('sha256', Buffer.from(input), { key: ec.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}

const config = (cache) => JSON.stringify({
  environment: 'production',
  public_urls: ['http://api.example'],
  key_managers: [{
    name: 'idp', issuer: 'https://idp.example', audiences: ['api://pets'],
    jwks: { uri: 'https://idp.example/jwks', cluster: 'jwks_idp', authority: 'idp.example', path: '/jwks' },
  }],
  apis: [{ name: 'pets', base_path: '/pets/v1', resources: [
    { method: 'GET', path: '/pets', scopes: ['pets:read'] },
    { method: 'GET', path: '/pets/{id}', scopes: ['pets:read'] },
    { method: 'GET', path: '/health', public: true },
  ] }],
  applications: [{ name: 'shop', client_ids: [{ key_manager: 'idp', client_id: 'app-1' }], subscriptions: [{ api: 'pets' }] }],
  settings: {
    ...(cache >= 0 ? { token_cache_entries: cache } : {}),
    ...(opt['cache-bytes'] > 0 ? { token_cache_bytes: opt['cache-bytes'] } : {}),
    dpop_replay_slots: 65536,
  },
});

// Request headers of a real API client (as envoy/bench.sh sends them).
const baseHeaders = [
  [':authority', 'api.example'], [':path', '/pets/v1/pets'], [':method', 'GET'], [':scheme', 'http'],
  ['user-agent', 'shop-backend/4.2.1 (okhttp/4.12.0; linux)'], ['accept', 'application/json'],
  ['accept-encoding', 'gzip, deflate, br'], ['accept-language', 'en-US,en;q=0.9'],
  ['x-request-id', '6f1c2f0e-3c1b-4a51-9a7e-2f6b1e3d9c44'], ['x-forwarded-for', '203.0.113.7'],
  ['x-forwarded-proto', 'https'], ['traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
  ['cookie', 'session=9a8b7c6d5e4f; region=eu-west-1'],
];

const te = new TextEncoder();
const td = new TextDecoder();
const keyObjects = new Map();

function serializeMap(pairs) {
  const parts = pairs.map(([k, v]) => [te.encode(k), te.encode(v)]);
  let size = 4 + parts.length * 8;
  for (const [k, v] of parts) size += k.length + v.length + 2;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, parts.length, true);
  let p = 4;
  for (const [k, v] of parts) { dv.setUint32(p, k.length, true); dv.setUint32(p + 4, v.length, true); p += 8; }
  for (const [k, v] of parts) { out.set(k, p); p += k.length + 1; out.set(v, p); p += v.length + 1; }
  return out;
}

// VerifySignatureArguments (protobuf) → {hash, key, sig, text}.
function decodeArgs(buf) {
  const out = {};
  let p = 0;
  const varint = () => { let v = 0, s = 0, b; do { b = buf[p++]; v += (b & 0x7f) * 2 ** s; s += 7; } while (b & 0x80); return v; };
  while (p < buf.length) {
    const tag = varint();
    const len = varint();
    const field = buf.subarray(p, p + len);
    p += len;
    out[tag >> 3] = field;
  }
  return out;
}

async function load(path, cacheEntries) {
  const bytes = readFileSync(path);
  const calls = new Map();
  const metricIds = new Map();
  const metricNames = [];
  const counters = new Map();
  let memory, ex;
  let current = { request: [], http: null };
  const shared = new Map();
  let cas = 1;
  let pending = null; // callout token
  let foreign = null;
  let configured = false;
  const count = (name) => calls.set(name, (calls.get(name) || 0) + 1);
  const u8 = () => new Uint8Array(memory.buffer);
  const dv = () => new DataView(memory.buffer);
  const give = (data, ptrPtr, sizePtr) => {
    const ptr = ex.proxy_on_memory_allocate(data.length || 1);
    u8().set(data, ptr);
    dv().setUint32(ptrPtr, ptr, true);
    dv().setUint32(sizePtr, data.length, true);
  };
  const str = (ptr, len) => td.decode(u8().subarray(ptr, ptr + len));
  const conf = te.encode(config(cacheEntries));
  const callHeaders = serializeMap([[':status', '200'], ['content-type', 'application/json']]);
  const empty = serializeMap([]);
  const headersOf = (t) => (t === 0 ? current.request.pairs : []);
  const env = {
    proxy_log: (level, p, l) => { count('log'); if (level >= 3 || process.env.VM_LOG) process.stderr.write(`wasm log ${level}: ${str(p, l)}\n`); return 0; },
    proxy_get_buffer_bytes: (type, start, max, ptrPtr, sizePtr) => {
      count('get_buffer_bytes');
      const data = type === 7 ? conf : type === 4 ? te.encode(jwks) : type === 8 ? foreign : null;
      if (!data) return 1;
      give(data.subarray(start >>> 0, Math.min(data.length, (start >>> 0) + (max >>> 0))), ptrPtr, sizePtr);
      return 0;
    },
    proxy_get_header_map_pairs: (t, ptrPtr, sizePtr) => {
      count('get_header_map_pairs');
      give(t === 0 ? current.request.serialized : t === 6 ? callHeaders : empty, ptrPtr, sizePtr);
      return 0;
    },
    proxy_get_header_map_value: (t, kp, kl, ptrPtr, sizePtr) => {
      count('get_header_map_value');
      const k = str(kp, kl);
      const hit = headersOf(t).find(([n]) => n === k);
      if (!hit) return 1;
      give(te.encode(hit[1]), ptrPtr, sizePtr);
      return 0;
    },
    // Writes are counted, not applied: every request starts from its own precomputed map.
    proxy_add_header_map_value: () => { count('add_header_map_value'); return 0; },
    proxy_replace_header_map_value: () => { count('replace_header_map_value'); return 0; },
    proxy_remove_header_map_value: () => { count('remove_header_map_value'); return 0; },
    proxy_set_header_map_pairs: () => { count('set_header_map_pairs'); return 0; },
    proxy_get_property: () => { count('get_property'); return 1; },
    proxy_set_property: () => { count('set_property'); return 0; },
    proxy_define_metric: (t, np, nl, idPtr) => {
      count('define_metric');
      const name = str(np, nl);
      if (!metricIds.has(name)) { metricIds.set(name, metricNames.length); metricNames.push(name); }
      dv().setUint32(idPtr, metricIds.get(name), true);
      return 0;
    },
    proxy_increment_metric: (id) => { count('increment_metric'); const n = metricNames[id]; counters.set(n, (counters.get(n) || 0) + 1); return 0; },
    proxy_record_metric: () => { count('record_metric'); return 0; },
    proxy_get_current_time_nanoseconds: (ptr) => {
      count('get_current_time');
      dv().setBigUint64(ptr, BigInt(NOW) * 1000000000n + BigInt(Math.floor(performance.now() * 1e6) % 1e9), true);
      return 0;
    },
    proxy_get_shared_data: (kp, kl, ptrPtr, sizePtr, casPtr) => {
      count('get_shared_data');
      const e = shared.get(str(kp, kl));
      if (!e) return 1;
      give(e.bytes, ptrPtr, sizePtr);
      dv().setUint32(casPtr, e.cas, true);
      return 0;
    },
    proxy_set_shared_data: (kp, kl, vp, vl, c) => {
      count('set_shared_data');
      const k = str(kp, kl);
      const e = shared.get(k);
      if (e && c !== 0 && c !== e.cas) return 8; // CasMismatch
      shared.set(k, { bytes: u8().slice(vp, vp + vl), cas: cas++ });
      return 0;
    },
    proxy_http_call: (...a) => { count('http_call'); const tokenPtr = a[a.length - 1]; pending = 7; dv().setUint32(tokenPtr, 7, true); return 0; },
    proxy_send_local_response: (status) => { count('send_local_response'); current.local = status; return 0; },
    proxy_set_effective_context: () => { count('set_effective_context'); return 0; },
    proxy_call_foreign_function: (np, nl, ap, al, ptrPtr, sizePtr) => {
      count('call_foreign_function');
      if (str(np, nl) !== 'verify_signature') return 2;
      // --skip-verify: after the configuration's self-test every signature is taken as valid,
      // so what is left is the module's own cost (Envoy's BoringSSL check is measured apart).
      if (opt['skip-verify'] && configured) { give(Uint8Array.of(8, 1), ptrPtr, sizePtr); return 0; }
      const a = decodeArgs(u8().slice(ap, ap + al));
      const der = Buffer.from(a[2]).toString('base64');
      if (!keyObjects.has(der)) keyObjects.set(der, createPublicKey({ key: Buffer.from(a[2]), format: 'der', type: 'spki' }));
      const key = keyObjects.get(der);
      const ok = verify(td.decode(a[1]), a[4], key, a[3]);
      give(ok ? Uint8Array.of(8, 1) : new Uint8Array(0), ptrPtr, sizePtr);
      return 0;
    },
    proxy_register_shared_queue: (np, nl, idPtr) => { count('register_shared_queue'); dv().setUint32(idPtr, 1, true); return 0; },
    proxy_enqueue_shared_queue: () => { count('enqueue_shared_queue'); return 0; },
    proxy_dequeue_shared_queue: () => { count('dequeue_shared_queue'); return 1; },
    proxy_resolve_shared_queue: () => 1,
    proxy_set_tick_period_milliseconds: () => 0,
    proxy_continue_stream: () => { count('continue_stream'); return 0; },
    proxy_close_stream: () => 0,
    proxy_get_status: () => 1,
    proxy_grpc_call: () => 1, proxy_grpc_stream: () => 1, proxy_grpc_send: () => 1,
    proxy_grpc_cancel: () => 1, proxy_grpc_close: () => 1, proxy_set_buffer_bytes: () => 1,
    proxy_done: () => 0,
  };
  const wasi = {
    random_get: (p, n) => { const b = u8(); for (let i = 0; i < n; i++) b[p + i] = (Math.random() * 256) | 0; return 0; },
    environ_get: () => 0,
    environ_sizes_get: (a, b) => { dv().setUint32(a, 0, true); dv().setUint32(b, 0, true); return 0; },
    fd_write: (fd, iov, n, out) => { dv().setUint32(out, 0, true); return 0; },
    proc_exit: (c) => { throw new Error(`proc_exit ${c}`); },
  };
  const { instance } = await WebAssembly.instantiate(bytes, { env, wasi_snapshot_preview1: wasi });
  ex = instance.exports;
  memory = ex.memory;
  ex._initialize?.();
  ex.proxy_on_context_create(1, 0);
  ex.proxy_on_vm_start(1, 0);
  if (!ex.proxy_on_configure(1, conf.length)) throw new Error(`${path}: configuration refused`);
  configured = true;
  ex.proxy_on_tick(1);
  if (pending !== null) { ex.proxy_on_http_call_response(1, pending, 2, jwks.length, 0); pending = null; }
  let ctx = 100;
  const request = (headers) => {
    ctx++;
    current = { request: headers, local: 0 };
    ex.proxy_on_context_create(ctx, 1);
    const action = ex.proxy_on_request_headers(ctx, headers.pairs.length, 1);
    ex.proxy_on_done(ctx);
    ex.proxy_on_delete(ctx);
    if (action !== 0 || current.local) throw new Error(`${path}: request answered ${current.local} (action ${action})`);
  };
  return { request, calls, counters, memory: () => memory.buffer.byteLength };
}

// Zipf(s = 1) over n ranks by inverse CDF on precomputed weights.
function zipf(n, count, seed) {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 1; k <= n; k++) { sum += 1 / k; cdf[k - 1] = sum; }
  let x = seed >>> 0;
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    const u = (x / 4294967296) * sum;
    let lo = 0, hi = n - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (cdf[mid] < u) lo = mid + 1; else hi = mid; }
    out[i] = lo;
  }
  return out;
}

const prepared = (pairs) => ({ pairs, serialized: serializeMap(pairs) });
const auth = (tok, scheme = 'Bearer') => prepared([...baseHeaders, ['authorization', `${scheme} ${tok}`]]);
let streams;
if (opt.case === 'hit' || opt.case === 'miss') {
  const h = auth(token(0));
  streams = () => () => h;
} else if (opt.case === 'public') {
  // A public resource, no token (as envoy/bench.sh's keygate-public sends it).
  const h = prepared(baseHeaders.map(([n, v]) => [n, n === ':path' ? '/pets/v1/health' : v]));
  streams = () => () => h;
} else if (opt.case === 'dpop') {
  const tok = token(0, { jkt: thumb });
  const proofs = [];
  // --proofs P: a fixed pool (P must cover warm-up + one request + requests x rounds).
  const pool = opt.proofs || opt.requests * opt.rounds + opt.warmup + 1;
  for (let i = 0; i < pool; i++) proofs.push(prepared([...auth(tok, 'DPoP').pairs, ['dpop', proof(tok, i)]]));
  streams = () => { let i = 0; return () => proofs[i++]; };
} else if (opt.case === 'zipf') {
  const toks = [];
  for (let i = 0; i < opt.tokens; i++) toks.push(auth(token(i)));
  const picks = zipf(opt.tokens, opt.requests * opt.rounds + opt.warmup + 1, 12345);
  streams = () => { let i = 0; return () => toks[picks[i++]]; };
} else {
  throw new Error(`unknown case ${opt.case}`);
}

const cache = opt.case === 'miss' ? 0 : opt.cache;
const mods = [];
for (const arg of wasms) {
  // `PATH@ENTRIES` runs that module with `token_cache_entries: ENTRIES`.
  const [w, entries] = arg.split('@');
  const m = await load(w, entries === undefined ? cache : Number(entries));
  mods.push({ path: arg, ...m, best: Infinity, next: streams(), hits: 0 });
}
// Warm-up (JIT tier-up), then host calls of one request, then interleaved rounds.
for (const m of mods) for (let i = 0; i < opt.warmup; i++) m.request(m.next());
for (const m of mods) {
  m.calls.clear();
  m.request(m.next());
  m.perRequest = Object.fromEntries([...m.calls].sort());
  m.perRequestTotal = [...m.calls.values()].reduce((a, b) => a + b, 0);
}
for (let r = 0; r < opt.rounds; r++) {
  for (const m of mods) {
    m.calls.clear();
    m.counters.clear();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < opt.requests; i++) m.request(m.next());
    const us = Number(process.hrtime.bigint() - t0) / 1000 / opt.requests;
    m.best = Math.min(m.best, us);
    const hit = m.counters.get('keygate_token_cache.result.hit') || 0;
    const miss = m.counters.get('keygate_token_cache.result.miss') || 0;
    m.hitRate = hit / Math.max(1, hit + miss);
  }
}
for (const m of mods) {
  process.stdout.write(`${JSON.stringify({
    wasm: m.path, bytes: readFileSync(m.path.split('@')[0]).length, case: opt.case, us_per_request: Number(m.best.toFixed(3)),
    cache_hit_rate: Number(m.hitRate.toFixed(4)), requests_per_s: Math.round(1e6 / m.best),
    wasm_memory_bytes: m.memory(), host_calls_per_request: m.perRequestTotal, host_calls: m.perRequest,
  })}\n`);
}
