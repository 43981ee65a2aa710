//! Why a JWKS fetch did not produce keys, and why a request cannot get keys.

use std::fmt;

/// Why a fetch produced no usable key set. The last one is kept for status, logs and metrics.
///
/// A fetch error never replaces good keys: the cache keeps serving what it has (within the stale
/// bound) and schedules a retry with backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchError {
    /// The host gave up waiting for the key manager (the fetch timeout passed).
    Timeout,
    /// The connection failed or was reset before a response arrived.
    Unreachable,
    /// The host refused to start the fetch (for example, the cluster does not exist).
    DispatchFailed,
    /// The key manager answered with a status outside 2xx.
    Status { status: u32 },
    /// The body is larger than the configured limit.
    TooLarge { bytes: usize, max_bytes: usize },
    /// The body is not a JWKS (not JSON, or not the expected shape).
    Malformed,
    /// The body is a JWKS but holds no key keygate can use.
    NoUsableKey,
}

impl FetchError {
    /// Stable snake_case code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            FetchError::Timeout => "jwks_timeout",
            FetchError::Unreachable => "jwks_unreachable",
            FetchError::DispatchFailed => "jwks_dispatch_failed",
            FetchError::Status { .. } => "jwks_http_status",
            FetchError::TooLarge { .. } => "jwks_too_large",
            FetchError::Malformed => "jwks_malformed",
            FetchError::NoUsableKey => "jwks_no_usable_key",
        }
    }

    /// Compact form for the shared record: a tag and one number.
    pub(crate) fn to_wire(self) -> (u8, u64) {
        match self {
            FetchError::Timeout => (1, 0),
            FetchError::Unreachable => (2, 0),
            FetchError::DispatchFailed => (3, 0),
            FetchError::Status { status } => (4, u64::from(status)),
            FetchError::TooLarge { bytes, .. } => (5, bytes as u64),
            FetchError::Malformed => (6, 0),
            FetchError::NoUsableKey => (7, 0),
        }
    }

    /// Inverse of `to_wire`; `max_bytes` is not stored (every worker has the same settings).
    pub(crate) fn from_wire(tag: u8, value: u64, max_bytes: usize) -> Option<Option<FetchError>> {
        let error = match tag {
            0 => return Some(None),
            1 => FetchError::Timeout,
            2 => FetchError::Unreachable,
            3 => FetchError::DispatchFailed,
            4 => FetchError::Status {
                status: u32::try_from(value).ok()?,
            },
            5 => FetchError::TooLarge {
                bytes: usize::try_from(value).unwrap_or(usize::MAX),
                max_bytes,
            },
            6 => FetchError::Malformed,
            7 => FetchError::NoUsableKey,
            _ => return None,
        };
        Some(Some(error))
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Timeout => f.write_str("JWKS fetch timed out"),
            FetchError::Unreachable => f.write_str("key manager unreachable"),
            FetchError::DispatchFailed => f.write_str("JWKS fetch could not be started"),
            FetchError::Status { status } => write!(f, "JWKS endpoint answered {status}"),
            FetchError::TooLarge { bytes, max_bytes } => {
                write!(f, "JWKS body of {bytes} bytes exceeds {max_bytes}")
            }
            FetchError::Malformed => f.write_str("JWKS body is not a valid key set"),
            FetchError::NoUsableKey => f.write_str("JWKS holds no usable key"),
        }
    }
}

impl std::error::Error for FetchError {}

/// What a key-set parser may say about a body; the cache turns it into a `FetchError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyProblem {
    /// Not JSON or not a JWKS.
    Malformed,
    /// A JWKS without one usable key (e.g. `{"keys":[]}`).
    NoUsableKey,
}

impl From<BodyProblem> for FetchError {
    fn from(problem: BodyProblem) -> Self {
        match problem {
            BodyProblem::Malformed => FetchError::Malformed,
            BodyProblem::NoUsableKey => FetchError::NoUsableKey,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_round_trip_keeps_every_variant() {
        let all = [
            FetchError::Timeout,
            FetchError::Unreachable,
            FetchError::DispatchFailed,
            FetchError::Status { status: 503 },
            FetchError::TooLarge {
                bytes: 10_000_000,
                max_bytes: 4096,
            },
            FetchError::Malformed,
            FetchError::NoUsableKey,
        ];
        for error in all {
            let (tag, value) = error.to_wire();
            assert_eq!(FetchError::from_wire(tag, value, 4096), Some(Some(error)));
        }
        assert_eq!(FetchError::from_wire(0, 0, 1), Some(None));
        assert_eq!(FetchError::from_wire(99, 0, 1), None);
        assert_eq!(FetchError::from_wire(4, u64::MAX, 1), None);
    }

    #[test]
    fn codes_are_distinct_snake_case() {
        let codes: Vec<&str> = [
            FetchError::Timeout,
            FetchError::Unreachable,
            FetchError::DispatchFailed,
            FetchError::Status { status: 500 },
            FetchError::TooLarge {
                bytes: 2,
                max_bytes: 1,
            },
            FetchError::Malformed,
            FetchError::NoUsableKey,
        ]
        .iter()
        .map(FetchError::code)
        .collect();
        let mut unique = codes.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), codes.len());
        assert!(codes
            .iter()
            .all(|c| c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_')));
    }
}
