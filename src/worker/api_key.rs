//! API keys on their way through the worker: removed from every request to an API that reads
//! keys, before anything is decided, so no outcome forwards one (the header's every copy, and
//! the query parameter when the API reads keys from one).

use super::{Host, StreamId, Worker};
use crate::decision::{api_key_headers, path_without_api_key};
use crate::policy::ApiId;

impl Worker {
    pub(super) fn strip_api_key(
        &self,
        host: &mut impl Host,
        stream: StreamId,
        api: ApiId,
        headers: &[(String, String)],
        path: &str,
    ) {
        let mut removed: Vec<&str> = Vec::new();
        for name in api_key_headers(&self.policy, api, headers) {
            if !removed.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                host.remove_header(stream, name);
                removed.push(name);
            }
        }
        if let Some(stripped) = path_without_api_key(&self.policy, api, path) {
            host.remove_header(stream, ":path");
            host.set_header(stream, ":path", &stripped);
        }
    }
}
