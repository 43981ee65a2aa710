"""Signs one token per algorithm with Python's `cryptography` (an implementation independent of
the RustCrypto crates keygate verifies with) using keys.json; writes interop.json (committed).

Claims are valid at 1700000000 (exp 1700003600).
"""
import base64, hashlib, hmac, json, os
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

HERE = os.path.dirname(__file__)
KEYS = json.load(open(os.path.join(HERE, "keys.json")))

def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def unb64(s): return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
def num(s): return int.from_bytes(unb64(s), "big")

def rsa_key(name):
    j = KEYS[name]
    n, e, d, p, q = (num(j[k]) for k in ("n", "e", "d", "p", "q"))
    pub = rsa.RSAPublicNumbers(e, n)
    return rsa.RSAPrivateNumbers(p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q),
                                 rsa.rsa_crt_iqmp(p, q), pub).private_key()

CURVES = {"p256": (ec.SECP256R1(), 32), "p384": (ec.SECP384R1(), 48), "p521": (ec.SECP521R1(), 66)}
HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}

def sign(alg, key, msg):
    h = HASHES.get(alg[2:])
    if alg.startswith("HS"):
        return hmac.new(unb64(KEYS[key]["k"]), msg, getattr(hashlib, "sha" + alg[2:])).digest()
    if alg.startswith("RS"):
        return rsa_key(key).sign(msg, padding.PKCS1v15(), h())
    if alg.startswith("PS"):
        return rsa_key(key).sign(msg, padding.PSS(padding.MGF1(h()), h().digest_size), h())
    if alg.startswith("ES"):
        curve, size = CURVES[key]
        sk = ec.derive_private_key(num(KEYS[key]["d"]), curve)
        r, s = utils.decode_dss_signature(sk.sign(msg, ec.ECDSA(h())))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.from_private_bytes(unb64(KEYS[key]["d"])).sign(msg)
    raise ValueError(alg)

CASES = [("HS256", "oct64", "k-oct"), ("HS384", "oct64", "k-oct"), ("HS512", "oct64", "k-oct"),
         ("RS256", "rsa2048", "k-rsa"), ("RS384", "rsa2048", "k-rsa"), ("RS512", "rsa3072", "k-rsa3072"),
         ("PS256", "rsa2048", "k-rsa"), ("PS384", "rsa3072", "k-rsa3072"), ("PS512", "rsa2048", "k-rsa"),
         ("ES256", "p256", "k-p256"), ("ES384", "p384", "k-p384"), ("ES512", "p521", "k-p521"),
         ("EdDSA", "ed25519", "k-ed")]

out = {}
for alg, key, kid in CASES:
    header = json.dumps({"alg": alg, "kid": kid, "typ": "at+jwt"}, separators=(",", ":")).encode()
    claims = json.dumps({"iss": "https://idp.example", "aud": "api://pets", "sub": "py-" + alg,
                         "exp": 1700003600, "iat": 1699999000}, separators=(",", ":")).encode()
    msg = (b64(header) + "." + b64(claims)).encode()
    out[alg] = msg.decode() + "." + b64(sign(alg, key, msg))
with open(os.path.join(HERE, "interop.json"), "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
