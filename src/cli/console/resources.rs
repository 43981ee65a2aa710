//! An API's resources as the console's forms write them: one `METHOD /path; scopes=a,b;
//! groups=g; public` per line, or the operations of an OpenAPI 3 document.

use super::model::Resource;
use super::store::{ConsoleError, Result};

/// Comma or whitespace separated values.
pub fn split_list(text: &str) -> Vec<String> {
    text.split([',', ' ', '\n', '\r', '\t'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `METHOD /path; scopes=a,b; groups=g; public`, one per line.
pub fn parse_resources(text: &str) -> Result<Vec<Resource>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let field = format!("resources (line {})", i + 1);
        let mut parts = line.split(';').map(str::trim);
        let head = parts.next().unwrap_or_default();
        let (method, path) = head
            .split_once(' ')
            .map(|(m, p)| (m.trim(), p.trim()))
            .ok_or_else(|| ConsoleError::invalid(&field, "expected `METHOD /path`"))?;
        let mut resource = Resource {
            method: method.to_uppercase(),
            path: path.to_string(),
            scopes: Vec::new(),
            groups: Vec::new(),
            public: false,
        };
        for part in parts.filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some(("scopes", v)) => resource.scopes = split_list(v),
                Some(("groups", v)) => resource.groups = split_list(v),
                None if part == "public" => resource.public = true,
                _ => {
                    return Err(ConsoleError::invalid(
                        &field,
                        format!("`{part}`: expected scopes=…, groups=… or public"),
                    ))
                }
            }
        }
        out.push(resource);
    }
    Ok(out)
}

/// The resources of an OpenAPI 3 document (JSON or YAML): each operation of `paths` (paths in
/// sorted order, methods in OpenAPI's order) with the
/// OAuth2 scopes of its security requirement (the operation's, else the document's). A
/// requirement `[]` (or `{}`) makes the operation public. keygate grants a resource to a token
/// with any one of its scopes, so each requirement may name one scope; a requirement that needs
/// several at once is refused rather than loosened.
pub fn resources_from_openapi(text: &str) -> Result<Vec<Resource>> {
    const FIELD: &str = "openapi";
    let doc: serde_json::Value = serde_saphyr::from_str(text).map_err(|err| {
        ConsoleError::invalid(FIELD, format!("not a JSON or YAML document: {err}"))
    })?;
    if !doc
        .get("openapi")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|v| v.starts_with('3'))
    {
        return Err(ConsoleError::invalid(
            FIELD,
            "not an OpenAPI 3 document (`openapi: 3.x`)",
        ));
    }
    let paths = doc
        .get("paths")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| ConsoleError::invalid(FIELD, "no `paths`"))?;
    let global = doc.get("security");
    let mut out = Vec::new();
    for (path, item) in paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        for method in [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ] {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let security = operation.get("security").or(global);
            let mut scopes = Vec::new();
            let mut public = false;
            if let Some(requirements) = security.and_then(serde_json::Value::as_array) {
                if requirements.is_empty() {
                    public = true;
                }
                for requirement in requirements {
                    let Some(map) = requirement.as_object() else {
                        continue;
                    };
                    if map.is_empty() {
                        public = true;
                    }
                    for needed in map.values() {
                        let needed: Vec<String> = needed
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|v| v.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default();
                        if needed.len() > 1 {
                            return Err(ConsoleError::invalid(
                                FIELD,
                                format!(
                                    "{} {path} needs all of {} at once; keygate grants a \
                                     resource for any one of its scopes: enter it by hand",
                                    method.to_uppercase(),
                                    needed.join(", ")
                                ),
                            ));
                        }
                        scopes.extend(needed);
                    }
                }
            }
            scopes.sort();
            scopes.dedup();
            out.push(Resource {
                method: method.to_uppercase(),
                path: path.clone(),
                scopes: if public { Vec::new() } else { scopes },
                groups: Vec::new(),
                public,
            });
        }
    }
    if out.is_empty() {
        return Err(ConsoleError::invalid(FIELD, "no operations under `paths`"));
    }
    Ok(out)
}

pub fn format_resources(resources: &[Resource]) -> String {
    resources
        .iter()
        .map(|r| {
            let mut line = format!("{} {}", r.method, r.path);
            if !r.scopes.is_empty() {
                line.push_str(&format!("; scopes={}", r.scopes.join(",")));
            }
            if !r.groups.is_empty() {
                line.push_str(&format!("; groups={}", r.groups.join(",")));
            }
            if r.public {
                line.push_str("; public");
            }
            line + "\n"
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_lines() {
        let parsed =
            parse_resources("get /pets/{id}; scopes=a,b; groups=g\n\nGET /health; public\n");
        let parsed = parsed.unwrap_or_default();
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            format_resources(&parsed),
            "GET /pets/{id}; scopes=a,b; groups=g\nGET /health; public\n"
        );
        let err = parse_resources("GET /x; scope=a").err();
        assert_eq!(
            err.as_ref().and_then(|e| e.field()),
            Some("resources (line 1)")
        );
        assert!(parse_resources("/x").is_err());
    }

    #[test]
    fn openapi_operations_become_resources() {
        let doc = r#"
openapi: 3.0.3
security: [{oauth: [pets:read]}]
paths:
  /pets:
    get: {}
    post: {security: [{oauth: [pets:write]}, {oauth: [pets:admin]}]}
  /health:
    get: {security: []}
"#;
        let resources = resources_from_openapi(doc).unwrap_or_default();
        assert_eq!(
            format_resources(&resources),
            "GET /health; public\nGET /pets; scopes=pets:read\nPOST /pets; scopes=pets:admin,pets:write\n"
        );
        let all_of = "openapi: 3.1.0\npaths: {/x: {get: {security: [{o: [a, b]}]}}}";
        assert!(resources_from_openapi(all_of).is_err());
        assert!(resources_from_openapi("swagger: '2.0'\npaths: {}").is_err());
    }
}
