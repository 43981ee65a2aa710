//! JWKS cache per key manager: a state machine driven by `now` and fetch events.
