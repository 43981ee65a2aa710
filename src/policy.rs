//! The authorization decision: compiled policy (APIs, applications, subscriptions, environments).
