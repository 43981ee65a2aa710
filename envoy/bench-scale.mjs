// `make bench-scale`: keygate with its applications in the application directory, at platform
// scale, against a 10-application baseline. Loopback only, every step bounded in time; Node's
// built-ins only (an ES256 key of its own, a JWKS server and an upstream in this process).
//
// Steps: (1) two declarations, BENCH_SCALE_APPS applications (default 100,000; 3 client ids and 3
// subscriptions each, 100 APIs) and 10, both with `directory:`; (2) `keygate generate` timed, the
// plugin config's size; (3) `keygate directory serve` for each; (4) Envoy with 1 and 4 workers per
// declaration: time until the first request is allowed (directory loaded), VmRSS; (5) with 4
// workers, a subscription change in the big declaration's file: time until Envoy enforces it, while
// a steady load of an unrelated application counts any request that is not answered 200;
// (6) verified-token cache hits with wrk (1 worker, Envoy pinned to CPU 0, wrk to CPU 1) at 10 and
// at BENCH_SCALE_APPS applications. Prints a Markdown table and writes target/bench/scale.json.
//
//   BENCH_SCALE_APPS (100000)  BENCH_SECONDS (5)  BENCH_CONNECTIONS (16)  BENCH_ROUNDS (3)
// The script itself (JWKS, upstream) runs on CPU 1 with wrk (`make bench-scale` pins it).
import { spawn, spawnSync, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { generateKeyPairSync, sign as sign_ } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const APPS = Number(process.env.BENCH_SCALE_APPS || 100000);
const SECONDS = Number(process.env.BENCH_SECONDS || 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS || 16);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 3);
const APIS = 100;
const ENVOY = process.env.KEYGATE_ENVOY || path.join(ROOT, '.venv/bin/envoy');
const KEYGATE = process.env.KEYGATE_BIN || path.join(ROOT, 'target/release/keygate');
const WASM = path.join(ROOT, 'target/wasm32-wasip1/release/keygate.wasm');
const OUT = path.join(ROOT, 'target/bench');
const RUN = path.join(OUT, 'scale');
const children = [];

const say = (s) => console.log(`bench-scale: ${s}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const b64 = (b) => Buffer.from(b).toString('base64url');

function cleanup() {
  for (const c of children) {
    try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ }
  }
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

function get(port, urlPath, token) {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: urlPath, method: 'GET', agent: false,
      headers: token ? { authorization: `Bearer ${token}` } : {}, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', () => resolve({ status: 0, body: '' }));
    req.on('timeout', () => { req.destroy(); resolve({ status: 0, body: '' }); });
    req.end();
  });
}

async function until(what, seconds, check) {
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    if (await check()) return true;
    await sleep(20);
  }
  throw new Error(`${what}: not within ${seconds} s`);
}

// --- keys, JWKS, upstream ---------------------------------------------------------------------
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'scale', alg: 'ES256', use: 'sig' };
let issuer;
function token(client) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64(JSON.stringify({ alg: 'ES256', typ: 'at+jwt', kid: 'scale' }));
  const claims = b64(JSON.stringify({ iss: issuer, sub: client, aud: 'https://api.scale.test',
    client_id: client, iat: now, exp: now + 7200, jti: `${client}-${now}` }));
  const sig = sign_('sha256', Buffer.from(`${header}.${claims}`), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return `${header}.${claims}.${b64(sig)}`;
}

const name = (i) => `app-${String(i).padStart(6, '0')}`;
const client = (i, k) => `c-${String(i).padStart(6, '0')}-${k}`;
const api = (j) => `api-${String(j).padStart(3, '0')}`;
// Application i subscribes to APIs (i + 0, 1, 2 * 31) mod 100.
const subscribed = (i) => [0, 1, 2].map((k) => (i + k * 31) % APIS);

function declaration(apps, ports, extraSub) {
  const lines = [
    'gateway:', '  environment: production', `  listen: 127.0.0.1:${ports.listen}`, `  admin: 127.0.0.1:${ports.admin}`,
    'key_managers:', '  - name: bench', `    well_known_url: ${issuer}/.well-known/openid-configuration`,
    '    audiences: [https://api.scale.test]',
    '    discovery:', `      issuer: ${issuer}`, `      jwks_uri: ${issuer}/jwks`, `      token_endpoint: ${issuer}/token`,
    'directory:', `  url: http://127.0.0.1:${ports.directory}/keygate/directory`,
    'apis:',
  ];
  for (let j = 0; j < APIS; j++) {
    lines.push(`  - name: ${api(j)}`, `    base_path: /${api(j)}`, `    upstream: http://127.0.0.1:${ports.upstream}`,
      '    resources:', '      - {method: GET, path: /items}');
  }
  lines.push('applications:');
  for (let i = 0; i < apps; i++) {
    const subs = subscribed(i).map((j) => `{api: ${api(j)}}`);
    if (extraSub && extraSub.app === i) subs.push(`{api: ${api(extraSub.api)}}`);
    lines.push(`  - name: ${name(i)}`, '    client_ids:');
    for (let k = 0; k < 3; k++) lines.push(`      - {key_manager: bench, client_id: ${client(i, k)}}`);
    lines.push(`    subscriptions: [${subs.join(', ')}]`);
  }
  return lines.join('\n') + '\n';
}

// The same applications as JSON (what the directory source reads: a JSON declaration is parsed in
// well under a second, YAML at about 3 MB/s).
function applicationsJson(apps, extraSub) {
  const list = [];
  for (let i = 0; i < apps; i++) {
    const subs = subscribed(i).map((j) => ({ api: api(j) }));
    if (extraSub && extraSub.app === i) subs.push({ api: api(extraSub.api) });
    list.push({ name: name(i), client_ids: [0, 1, 2].map((k) => ({ key_manager: 'bench', client_id: client(i, k) })), subscriptions: subs });
  }
  return JSON.stringify({ gateway: { environment: 'production' }, applications: list });
}

function writeAtomic(file, text) {
  fs.writeFileSync(`${file}.tmp`, text);
  fs.renameSync(`${file}.tmp`, file);
}

function startDirectory(input, port, log) {
  const child = spawn(KEYGATE, ['directory', 'serve', '--input', input, '--listen', `127.0.0.1:${port}`],
    { stdio: ['ignore', 'pipe', fs.openSync(log, 'w')] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => { out += d; if (out.includes('DIRECTORY READY')) resolve(child); });
    child.on('exit', (code) => reject(new Error(`directory serve exited ${code}: ${fs.readFileSync(log, 'utf8').slice(-2000)}`)));
  });
}

function vmRss(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
  return kb / 1024;
}

// Where Envoy's memory is: tcmalloc's view from the admin /memory (allocated: live objects,
// heap_size: what the allocator holds) and the kernel's anonymous pages (smaps_rollup).
async function memoryDetail(pid, adminPort) {
  const mb = (n) => Number(n) / 1048576;
  const out = {};
  try {
    const m = JSON.parse((await get(adminPort, '/memory')).body);
    out.allocated = mb(m.allocated);
    out.heap = mb(m.heap_size);
    out.unmapped = mb(m.pageheap_unmapped);
  } catch { /* admin unavailable */ }
  try {
    const smaps = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    out.anonymous = Number(/Anonymous:\s+(\d+)/.exec(smaps)[1]) / 1024;
  } catch { /* no smaps_rollup */ }
  return out;
}

async function startEnvoy(config, workers, tag, cpus) {
  const args = ['-c', config, '--concurrency', String(workers), '--use-dynamic-base-id', '-l', 'info'];
  const cmd = cpus ? 'taskset' : ENVOY;
  const child = spawn(cmd, cpus ? ['-c', cpus, ENVOY, ...args] : args,
    { stdio: ['ignore', fs.openSync(path.join(RUN, `envoy-${tag}.log`), 'w'), fs.openSync(path.join(RUN, `envoy-${tag}.err`), 'w')] });
  children.push(child);
  return child;
}

function stop(child) {
  try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
}

async function main() {
  for (const [what, p] of [['Envoy', ENVOY], ['keygate CLI (make cli)', KEYGATE], ['keygate.wasm (make wasm)', WASM]]) {
    if (!fs.existsSync(p)) throw new Error(`missing ${what}: ${p}`);
  }
  fs.rmSync(RUN, { recursive: true, force: true });
  fs.mkdirSync(RUN, { recursive: true });

  const jwksServer = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=3600' });
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  const upstream = http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('ok'); });
  await new Promise((r) => jwksServer.listen(0, '127.0.0.1', r));
  await new Promise((r) => upstream.listen(0, '127.0.0.1', r));
  issuer = `http://127.0.0.1:${jwksServer.address().port}`;

  const result = { date: new Date().toISOString(), machine: `${os.cpus().length} x ${os.cpus()[0].model}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`, apps: APPS };
  const sizes = { big: APPS, small: 10 };
  const setups = {};
  for (const [tag, apps] of Object.entries(sizes)) {
    const ports = { listen: await freePort(), admin: await freePort(), directory: await freePort(), upstream: upstream.address().port };
    const input = path.join(RUN, `${tag}.yaml`);
    fs.writeFileSync(input, declaration(apps, ports));
    const served = path.join(RUN, `${tag}.json`);
    fs.writeFileSync(served, applicationsJson(apps));
    const out = path.join(RUN, `out-${tag}`);
    const t0 = process.hrtime.bigint();
    const gen = spawnSync(KEYGATE, ['generate', '--input', input, '--out', out, '--wasm', WASM], { encoding: 'utf8', maxBuffer: 1 << 26 });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    if (gen.status !== 0) throw new Error(`generate ${tag}: ${gen.stderr}`);
    const plugin = fs.statSync(path.join(out, 'plugin-config.json')).size;
    say(`${tag}: ${apps} applications, ${(fs.statSync(input).size / 1e6).toFixed(1)} MB declaration, generate ${seconds.toFixed(2)} s, plugin config ${plugin} bytes`);
    const t1 = Date.now();
    await startDirectory(served, ports.directory, path.join(RUN, `directory-${tag}.log`));
    const serveReady = (Date.now() - t1) / 1000;
    say(`${tag}: directory serve ready in ${serveReady.toFixed(2)} s`);
    setups[tag] = { apps, ports, input, served, out, generate_s: seconds, plugin_bytes: plugin, serve_ready_s: serveReady };
  }

  // Memory and first load, 1 and 4 workers.
  const probe = (tag) => {
    const i = Math.floor(setups[tag].apps / 2);
    return { path: `/${api(subscribed(i)[0])}/items`, token: token(client(i, 1)) };
  };
  for (const workers of [1, 4]) {
    for (const tag of ['small', 'big']) {
      const s = setups[tag];
      const t0 = Date.now();
      const envoy = await startEnvoy(path.join(s.out, 'envoy.yaml'), workers, `${tag}-${workers}`);
      const p = probe(tag);
      await until(`${tag} ${workers} workers: first allowed request`, 120, async () => (await get(s.ports.listen, p.path, p.token)).status === 200);
      const loaded = (Date.now() - t0) / 1000;
      // Every worker answers a few (new connections spread over the workers), then settle.
      for (let n = 0; n < 40; n++) await get(s.ports.listen, p.path, p.token);
      await sleep(2000);
      const rss = vmRss(envoy.pid);
      s[`rss_${workers}`] = rss;
      const detail = await memoryDetail(envoy.pid, s.ports.admin);
      s[`mem_${workers}`] = detail;
      say(`${tag}: ${workers} worker(s): memory ${JSON.stringify(detail)}`);
      s[`loaded_${workers}_s`] = loaded;
      say(`${tag}: ${workers} worker(s): directory loaded and first request allowed after ${loaded.toFixed(2)} s, VmRSS ${rss.toFixed(1)} MB`);
      if (tag === 'big' && workers === 4) {
        // A subscription change in the file, under load of another application.
        const steady = { path: `/${api(subscribed(7)[0])}/items`, token: token(client(7, 0)) };
        const target = Math.floor(s.apps / 3);
        const newApi = (subscribed(target)[0] + 50) % APIS;
        const tok = token(client(target, 2));
        const before = await get(s.ports.listen, `/${api(newApi)}/items`, tok);
        if (before.status !== 403) throw new Error(`before the change: ${before.status} ${before.body}`);
        let failed = 0; let sent = 0; let loading = true;
        const load = (async () => {
          while (loading) {
            const r = await get(s.ports.listen, steady.path, steady.token);
            sent += 1; if (r.status !== 200) failed += 1;
          }
        })();
        await sleep(1000);
        const t = Date.now();
        writeAtomic(s.served, applicationsJson(s.apps, { app: target, api: newApi }));
        await until('the change enforced', 60, async () => (await get(s.ports.listen, `/${api(newApi)}/items`, tok)).status === 200);
        const enforced = (Date.now() - t) / 1000;
        // Every worker: 40 requests in a row allowed.
        await until('the change enforced by every worker', 30, async () => {
          for (let n = 0; n < 40; n++) if ((await get(s.ports.listen, `/${api(newApi)}/items`, tok)).status !== 200) return false;
          return true;
        });
        const everywhere = (Date.now() - t) / 1000;
        await sleep(500);
        loading = false; await load;
        Object.assign(result, { change_enforced_s: enforced, change_everywhere_s: everywhere, load_requests: sent, load_failed: failed });
        say(`change: enforced after ${enforced.toFixed(2)} s (every worker: ${everywhere.toFixed(2)} s); steady load ${sent} requests, ${failed} not 200`);
      }
      stop(envoy);
      await sleep(500);
    }
  }

  // Cache-hit throughput, 1 worker pinned to CPU 0, wrk on CPU 1.
  // Rounds alternate the two sizes; the best round of each is reported.
  for (const tag of Array.from({ length: ROUNDS }, () => ['small', 'big']).flat()) {
    const s = setups[tag];
    const envoy = await startEnvoy(path.join(s.out, 'envoy.yaml'), 1, `${tag}-wrk`, '0');
    const p = probe(tag);
    await until(`${tag} wrk: first allowed request`, 120, async () => (await get(s.ports.listen, p.path, p.token)).status === 200);
    // Async: the upstream and the JWKS are served by this process's event loop.
    const wrk = async (seconds) => (await promisify(execFile)('taskset', ['-c', '1', 'wrk', '-t1', `-c${CONNECTIONS}`,
      `-d${seconds}s`, '-H', `authorization: Bearer ${p.token}`, `http://127.0.0.1:${s.ports.listen}${p.path}`], { encoding: 'utf8' })).stdout;
    await wrk(1);
    const out = await wrk(SECONDS);
    const rps = Number((/Requests\/sec:\s+([\d.]+)/.exec(out) || [0, 0])[1]);
    if (!rps) console.log(out);
    const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(out);
    if (non2xx) throw new Error(`${tag}: ${non2xx[1]} refused requests under wrk`);
    (s.rounds = s.rounds || []).push(rps);
    say(`${tag}: cache hits ${rps.toFixed(0)} req/s`);
    stop(envoy);
    await sleep(500);
  }

  // The median round of each size (this machine's rounds spread widely; the median resists one
  // quiet or busy round).
  for (const s of Object.values(setups)) {
    const sorted = [...s.rounds].sort((x, y) => x - y);
    s.rps = sorted[Math.floor((sorted.length - 1) / 2)];
  }
  const b = setups.big; const m = setups.small;
  const rows = [
    ['applications / client ids / APIs', `${m.apps} / ${m.apps * 3} / ${APIS}`, `${b.apps} / ${b.apps * 3} / ${APIS}`, ''],
    ['declaration', `${(fs.statSync(m.input).size / 1e3).toFixed(0)} KB`, `${(fs.statSync(b.input).size / 1e6).toFixed(1)} MB`, ''],
    ['`keygate generate`', `${m.generate_s.toFixed(2)} s`, `${b.generate_s.toFixed(2)} s`, 'seconds'],
    ['plugin config', `${(m.plugin_bytes / 1e3).toFixed(1)} KB`, `${(b.plugin_bytes / 1e3).toFixed(1)} KB`, '< 100 KB'],
    ['`directory serve` ready (JSON)', `${m.serve_ready_s.toFixed(2)} s`, `${b.serve_ready_s.toFixed(2)} s`, ''],
    ['Envoy start to first allowed request, 1 / 4 workers', `${m.loaded_1_s.toFixed(1)} / ${m.loaded_4_s.toFixed(1)} s`, `${b.loaded_1_s.toFixed(1)} / ${b.loaded_4_s.toFixed(1)} s`, ''],
    ['Envoy VmRSS, 1 worker', `${m.rss_1.toFixed(0)} MB`, `${b.rss_1.toFixed(0)} MB (+${(b.rss_1 - m.rss_1).toFixed(0)})`, '< +40 MB'],
    ['Envoy heap allocated (admin /memory), 1 / 4 workers', `${m.mem_1.allocated?.toFixed(0)} / ${m.mem_4.allocated?.toFixed(0)} MB`, `${b.mem_1.allocated?.toFixed(0)} / ${b.mem_4.allocated?.toFixed(0)} MB`, ''],
    ['Envoy anonymous memory (smaps_rollup), 1 / 4 workers', `${m.mem_1.anonymous?.toFixed(0)} / ${m.mem_4.anonymous?.toFixed(0)} MB`, `${b.mem_1.anonymous?.toFixed(0)} / ${b.mem_4.anonymous?.toFixed(0)} MB`, ''],
    ['Envoy VmRSS, 4 workers', `${m.rss_4.toFixed(0)} MB`, `${b.rss_4.toFixed(0)} MB (+${(b.rss_4 - m.rss_4).toFixed(0)})`, '< +40 MB'],
    ['subscription change in the file to enforced (4 workers)', '', `${result.change_enforced_s.toFixed(2)} s (all workers ${result.change_everywhere_s.toFixed(2)} s)`, '< 5 s'],
    ['requests failed meanwhile (steady load)', '', `${result.load_failed} of ${result.load_requests}`, '0'],
    ['cache-hit req/s, 1 worker (median round)', `${m.rps.toFixed(0)}`, `${b.rps.toFixed(0)} (${(100 * (b.rps / m.rps - 1)).toFixed(1)} %)`, 'within 3 %'],
  ];
  const table = ['| | 10 applications | ' + `${b.apps.toLocaleString('en')} applications | target |`, '|---|---|---|---|',
    ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
  console.log(`\n${table}\n\n${result.date}, ${result.machine}`);
  result.setups = setups; result.table = table;
  fs.writeFileSync(path.join(OUT, 'scale.json'), JSON.stringify(result, null, 2));
  cleanup();
  process.exit(0);
}

main().catch((err) => { console.error(`bench-scale: error: ${err.message}`); cleanup(); process.exit(1); });
