//! Registered-claim checks: `exp`/`nbf`/`iat` against an explicit `now`, exact `iss`, `aud`.
