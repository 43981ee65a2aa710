//! Denials mapped to the wire: RFC 6750 `WWW-Authenticate` plus a small JSON body.
