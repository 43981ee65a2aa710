//! Reaching a key manager: the OIDC discovery document and its rules, the HTTP GET that fetches
//! it, and the URLs it carries. Imports nothing else from `cli`.

pub mod http;
pub mod oidc;
pub mod url;
