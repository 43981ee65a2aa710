//! Identity of an authorized caller: forwarded headers and access-log metadata.
