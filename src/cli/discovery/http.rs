//! Fetching discovery documents: one GET, bounded in time and size, no redirects (the issuer rule
//! compares against the URL the operator gave, so a redirect must not silently change it).

use std::fmt;
use std::time::Duration;

/// Largest discovery document accepted (real ones are a few KiB).
const MAX_BODY_BYTES: u64 = 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub enum HttpGetError {
    /// Connection, TLS, timeout or read failure.
    Transport { url: String, detail: String },
    /// Anything but 200 (redirects included).
    Status { url: String, status: u16 },
    /// Body not a JSON object of the expected shape.
    NotJson { url: String, detail: String },
}

impl HttpGetError {
    pub fn code(&self) -> &'static str {
        match self {
            HttpGetError::Transport { .. } => "fetch_failed",
            HttpGetError::Status { .. } => "fetch_status",
            HttpGetError::NotJson { .. } => "fetch_not_json",
        }
    }
}

impl fmt::Display for HttpGetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpGetError::Transport { url, detail } => write!(f, "cannot fetch {url}: {detail}"),
            HttpGetError::Status { url, status } => {
                write!(
                    f,
                    "{url} answered HTTP {status} (expected 200, redirects are not followed)"
                )
            }
            HttpGetError::NotJson { url, detail } => {
                write!(
                    f,
                    "{url} did not return a JSON discovery document: {detail}"
                )
            }
        }
    }
}

/// GETs `url` and decodes the JSON body into `T`.
pub fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> Result<T, HttpGetError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into();
    let transport = |err: ureq::Error| HttpGetError::Transport {
        url: url.to_string(),
        detail: err.to_string(),
    };
    let mut response = agent
        .get(url)
        .header("accept", "application/json")
        .call()
        .map_err(transport)?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(HttpGetError::Status {
            url: url.to_string(),
            status,
        });
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_vec()
        .map_err(transport)?;
    serde_json::from_slice(&body).map_err(|err| HttpGetError::NotJson {
        url: url.to_string(),
        detail: err.to_string(),
    })
}
