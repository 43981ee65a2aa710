//! Claim mapping: where a key manager puts the client id, scopes and groups in its tokens.
