"""Generates the private test keys in keys.json (run once; output committed).

Test keys only: they sign crafted tokens in tests/jose_*.rs and benches/verify.rs.
"""
import base64, json, os
from cryptography.hazmat.primitives.asymmetric import rsa, ec, ed25519
from cryptography.hazmat.primitives import serialization

def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

def int_b64(n, size=None):
    size = size or (n.bit_length() + 7) // 8
    return b64(n.to_bytes(size, "big"))

def rsa_jwk(bits):
    k = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    p = k.private_numbers()
    return {"kty": "RSA", "n": int_b64(p.public_numbers.n), "e": int_b64(p.public_numbers.e),
            "d": int_b64(p.d), "p": int_b64(p.p), "q": int_b64(p.q)}

def ec_jwk(curve, crv, size):
    k = ec.generate_private_key(curve)
    p = k.private_numbers()
    return {"kty": "EC", "crv": crv, "x": int_b64(p.public_numbers.x, size),
            "y": int_b64(p.public_numbers.y, size), "d": int_b64(p.private_value, size)}

def ed_jwk():
    k = ed25519.Ed25519PrivateKey.generate()
    d = k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                        serialization.NoEncryption())
    x = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64(x), "d": b64(d)}

keys = {
    "rsa2048": rsa_jwk(2048),
    "rsa3072": rsa_jwk(3072),
    "rsa1024": rsa_jwk(1024),
    "p256": ec_jwk(ec.SECP256R1(), "P-256", 32),
    "p384": ec_jwk(ec.SECP384R1(), "P-384", 48),
    "p521": ec_jwk(ec.SECP521R1(), "P-521", 66),
    "ed25519": ed_jwk(),
    "oct64": {"kty": "oct", "k": b64(os.urandom(64))},
    "oct16": {"kty": "oct", "k": b64(os.urandom(16))},
}
with open(os.path.join(os.path.dirname(__file__), "keys.json"), "w") as f:
    json.dump(keys, f, indent=1)
    f.write("\n")
