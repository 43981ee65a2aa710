// Signing keys of the demo key manager: generation, persistence, rotation.
//
// The state is a list of private JWKs plus the kid of the current signer. oidc-provider builds its
// keystore once per Provider instance, so server.mjs builds a fresh Provider whenever this changes.
import { generateKeyPair, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { existsSync, readFileSync, writeFileSync, renameSync } from 'node:fs';

function newKid(prefix) {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

// Asynchronous generation on purpose: Node 20's generateKeyPairSync can deadlock when the garbage
// collector destroys an earlier key-generation job while a synchronous one holds its lock.
const generate = promisify(generateKeyPair);

async function rsaKey() {
  const { privateKey } = await generate('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: newKid('rsa'), alg: 'RS256', use: 'sig' };
}

async function ecKey() {
  const { privateKey } = await generate('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid: newKid('ec'), alg: 'ES256', use: 'sig' };
}

function isKeyState(value) {
  return value !== null && typeof value === 'object'
    && typeof value.signer === 'string'
    && Array.isArray(value.keys)
    && value.keys.some((k) => k && k.kid === value.signer && k.kty === 'RSA');
}

export class SigningKeys {
  #state;
  #file;

  constructor(state, file) {
    this.#state = state;
    this.#file = file;
  }

  // Two RSA keys (the first signs) and one EC P-256 key, so the JWKS always has several keys of
  // more than one type, as real key managers publish during rotations.
  static async generate(file) {
    const keys = [await rsaKey(), await rsaKey(), await ecKey()];
    const store = new SigningKeys({ signer: keys[0].kid, keys }, file);
    store.#save();
    return store;
  }

  // Reuses the keys in `file` when it holds a valid state, so `make run` restarts keep the same
  // JWKS (tokens issued before a restart stay verifiable); otherwise generates and writes them.
  static async loadOrGenerate(file) {
    if (file && existsSync(file)) {
      const parsed = JSON.parse(readFileSync(file, 'utf8'));
      if (isKeyState(parsed)) {
        return new SigningKeys(parsed, file);
      }
      process.stderr.write(`keymanager: ${file} holds no usable key state, generating new keys\n`);
    }
    return SigningKeys.generate(file);
  }

  get signer() {
    return this.#state.signer;
  }

  get kids() {
    return this.#state.keys.map((k) => k.kid);
  }

  // Private JWKs with the signer first: oidc-provider prefers the first matching key, and the
  // resource server config also names the signer's kid explicitly.
  privateJwks() {
    const signer = this.#state.keys.filter((k) => k.kid === this.#state.signer);
    const rest = this.#state.keys.filter((k) => k.kid !== this.#state.signer);
    return { keys: [...signer, ...rest].map((k) => ({ ...k })) };
  }

  // A new RSA key becomes the signer; every older key stays published for tokens already issued.
  async rotate() {
    const key = await rsaKey();
    this.#state = { signer: key.kid, keys: [key, ...this.#state.keys] };
    this.#save();
    return key.kid;
  }

  // Drops every key except the current signer: tokens signed by older keys stop verifying.
  retire() {
    const before = this.#state.keys.length;
    this.#state = { signer: this.#state.signer, keys: this.#state.keys.filter((k) => k.kid === this.#state.signer) };
    this.#save();
    return before - this.#state.keys.length;
  }

  describe() {
    return {
      signer: this.#state.signer,
      keys: this.#state.keys.map((k) => ({ kid: k.kid, kty: k.kty, alg: k.alg })),
    };
  }

  #save() {
    if (!this.#file) return;
    // Write then rename so a crash never leaves a half-written key file behind.
    const tmp = `${this.#file}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(this.#state)}\n`, { mode: 0o600 });
    renameSync(tmp, this.#file);
  }
}
