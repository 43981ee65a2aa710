//! The application directory protocol v1, source side (docs/console.md, "Directory"): gateways
//! poll `GET /keygate/directory/v1/snapshot` and `/v1/changes?since=V` on the console. Versions
//! are `<store id>.<sequence>`: the sequence of the store's change history, which keeps the last
//! [`store::DIRECTORY_HISTORY`] changes; an older or foreign version gets 410.

use serde_json::{json, Value};

use super::http::{Request, Response};
use super::ops::Console;
use super::store::{self, ConsoleError};
use super::web::same_token;
use crate::directory::{page_query, PageRefusal};

fn error(status: u16, error: &str, description: &str) -> Response {
    Response::json(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

pub fn handle(console: &Console, req: &Request, rest: &[&str]) -> Response {
    if req.method != "GET" {
        return error(405, "method_not_allowed", "GET only");
    }
    if let Some(token) = &console.directory_token {
        let given = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !same_token(given, token) {
            return error(401, "unauthorized", "a valid bearer token is required");
        }
    }
    let result = match rest {
        ["snapshot"] => snapshot(console, req),
        ["changes"] => changes(console, req),
        _ => return error(404, "not_found", "no such directory path"),
    };
    result.unwrap_or_else(|err| error(500, "internal", &err.to_string()))
}

fn version(console: &Console, seq: i64) -> String {
    format!("{}.{seq}", console.store.store_id)
}

fn snapshot(console: &Console, req: &Request) -> Result<Response, ConsoleError> {
    let (seq, apps) = console.store.snapshot(|conn| {
        let seq = store::directory_seq(conn)?;
        let apps: Vec<Value> = store::applications(conn, None)?
            .into_iter()
            .map(|row| serde_json::to_value(row.application.config()))
            .collect::<Result<_, _>>()?;
        Ok((seq, apps))
    })?;
    let v = version(console, seq);
    let etag = format!("\"{v}\"");
    // Paging (docs/directory.md): `limit` and `after`, by position in name order.
    let after = req.query("after");
    let page = match page_query(req.query("limit"), after, &v) {
        Ok(page) => page,
        Err(PageRefusal::BadRequest(why)) => return Ok(error(400, "invalid_request", why)),
        Err(PageRefusal::Gone) => {
            return Ok(error(
                410,
                "version_unknown",
                "the applications changed since this cursor: fetch /v1/snapshot again",
            ))
        }
    };
    if after.is_none() && req.header("if-none-match") == Some(etag.as_str()) {
        return Ok(Response::empty(304).with_header("etag", etag));
    }
    let mut apps = apps;
    apps.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let (range, next) = page.range(apps.len(), &v);
    let apps: Vec<Value> = apps.drain(range).collect();
    let body = match next {
        Some(next) => json!({"version": v, "applications": apps, "next": next}),
        None => json!({"version": v, "applications": apps}),
    };
    Ok(Response::json(200, &body).with_header("etag", etag))
}

fn changes(console: &Console, req: &Request) -> Result<Response, ConsoleError> {
    let Some(since) = req.query("since") else {
        return Ok(error(400, "invalid_request", "`since` is required"));
    };
    let Some((store_id, seq)) = since.split_once('.') else {
        return Ok(error(
            400,
            "invalid_request",
            "`since` is not a version of this source",
        ));
    };
    let Ok(since_seq) = seq.parse::<i64>() else {
        return Ok(error(
            400,
            "invalid_request",
            "`since` is not a version of this source",
        ));
    };
    let gone = || error(410, "version_unknown", "fetch /v1/snapshot");
    if store_id != console.store.store_id {
        return Ok(gone());
    }
    let (current, oldest, list) = console.store.snapshot(|conn| {
        let current = store::directory_seq(conn)?;
        let oldest = store::directory_oldest(conn)?;
        let list = if since_seq < current {
            store::directory_changes(conn, since_seq)?
        } else {
            Vec::new()
        };
        Ok((current, oldest, list))
    })?;
    if since_seq > current || since_seq < 0 {
        return Ok(gone());
    }
    if since_seq == current {
        return Ok(Response::empty(304));
    }
    // The change right after `since` must still be in the history.
    if oldest.is_some_and(|oldest| since_seq + 1 < oldest) {
        return Ok(gone());
    }
    let mut out = Vec::new();
    for (op, name, body) in list {
        out.push(match (op.as_str(), body) {
            ("upsert", Some(body)) => {
                json!({"op": "upsert", "application": serde_json::from_str::<Value>(&body)?})
            }
            _ => json!({"op": "remove", "name": name}),
        });
    }
    Ok(Response::json(
        200,
        &json!({"version": version(console, current), "changes": out}),
    ))
}
