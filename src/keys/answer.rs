//! Telling the key manager's own answer from one its proxy made up.
//!
//! When Envoy cannot get an answer for a `dispatch_http_call` (the fetch timeout passes, the
//! connection is refused or reset), it does not report "no response": its router answers the call
//! itself, 504 for a timeout and 503 for a failed connection. Taken at face value, every outage
//! would read as "the key manager answered 503/504" (`jwks_http_status`) and the timeout and
//! unreachable errors would never be reported. A response that really came from upstream carries
//! `x-envoy-upstream-service-time`, which the router adds to every upstream answer; a made-up one
//! does not.

/// Header Envoy's router adds to every response it relays from upstream (and to none it makes).
const UPSTREAM_TIME: &str = "x-envoy-upstream-service-time";

/// Whether a JWKS fetch's answer was made by the proxy because the key manager never answered
/// (then the shell reports it as a timeout or unreachable key manager, not as an HTTP status).
pub fn made_by_proxy(status: u32, headers: &[(String, String)]) -> bool {
    matches!(status, 503 | 504)
        && !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(UPSTREAM_TIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn envoy_timeout_and_connect_failure_are_made_by_the_proxy() {
        // As Envoy 1.40 hands them to the filter (seen in the product tests).
        let local = headers(&[
            (":status", "504"),
            ("content-length", "24"),
            ("content-type", "text/plain"),
        ]);
        assert!(made_by_proxy(504, &local));
        assert!(made_by_proxy(503, &local));
    }

    #[test]
    fn answers_relayed_from_upstream_are_the_key_managers() {
        let relayed = headers(&[
            (":status", "503"),
            ("content-type", "text/plain"),
            ("X-Envoy-Upstream-Service-Time", "4"),
        ]);
        assert!(!made_by_proxy(503, &relayed));
        assert!(!made_by_proxy(504, &relayed));
        // Other statuses are never made up for a lost answer: always the key manager's.
        let bare = headers(&[(":status", "500")]);
        assert!(!made_by_proxy(500, &bare));
        assert!(!made_by_proxy(200, &bare));
        assert!(!made_by_proxy(404, &bare));
    }
}
