//! Names for the key managers and APIs of one compiled policy: their positions in the
//! configuration, typed so that one is never taken for the other (or for any other count).
//! Only the policy makes them (compiling, routing, resolving an issuer); use one only with the
//! policy it came from.

/// A key manager of one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyManagerId(usize);

/// An API of one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiId(usize);

impl KeyManagerId {
    pub(crate) fn new(index: usize) -> Self {
        KeyManagerId(index)
    }

    /// The position in the configuration's `key_managers` (for per-key-manager tables).
    pub fn index(self) -> usize {
        self.0
    }
}

impl ApiId {
    pub(crate) fn new(index: usize) -> Self {
        ApiId(index)
    }

    /// The position in the configuration's `apis` (for per-API tables).
    pub fn index(self) -> usize {
        self.0
    }
}
