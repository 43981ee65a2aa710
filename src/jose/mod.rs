//! Compact JWS parsing, algorithms, JWK/JWKS and signature verification (RFC 7515/7517/7518).
