//! The request and response the console's handlers see: axum collects the request, the handlers
//! run on a blocking thread (the store and the key manager calls are synchronous), and the
//! response goes back through axum.

use std::collections::BTreeMap;

use serde::Serialize;

use super::store::ConsoleError;

pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path's segments, percent-decoded.
    pub fn segments(&self) -> Vec<String> {
        self.path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect()
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        let header = self.header("cookie")?;
        header.split(';').find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }

    /// The body as an urlencoded form.
    pub fn form(&self) -> Form {
        Form(parse_urlencoded(&String::from_utf8_lossy(&self.body)))
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConsoleError> {
        serde_json::from_slice(&self.body)
            .map_err(|err| ConsoleError::invalid("body", format!("not the expected JSON: {err}")))
    }
}

pub struct Form(pub Vec<(String, String)>);

impl Form {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().trim().to_string()
    }

    pub fn version(&self) -> Result<i64, ConsoleError> {
        self.text("version")
            .parse()
            .map_err(|_| ConsoleError::invalid("version", "missing or not a number"))
    }
}

pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_urlencoded(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn html(status: u16, body: String) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
            body: body.into_bytes(),
        }
    }

    pub fn json<T: Serialize>(status: u16, value: &T) -> Response {
        let body = serde_json::to_vec(value).unwrap_or_default();
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        }
    }

    pub fn text(status: u16, body: String) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: body.into_bytes(),
        }
    }

    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// 303 See Other to `location`.
    pub fn redirect(location: &str) -> Response {
        Response {
            status: 303,
            headers: vec![("location".into(), location.to_string())],
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: String) -> Response {
        self.headers.push((name.to_string(), value));
        self
    }

    /// A JSON error body `{"error", "error_description", "field"}`.
    pub fn json_error(err: &ConsoleError) -> Response {
        let mut body = serde_json::json!({
            "error": err.code(),
            "error_description": err.to_string(),
        });
        if let (Some(field), Some(map)) = (err.field(), body.as_object_mut()) {
            map.insert("field".into(), serde_json::Value::String(field.to_string()));
        }
        Response::json(err.status(), &body)
    }
}
