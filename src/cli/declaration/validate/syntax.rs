//! The YAML parser's errors in the declaration's words: the line and column, the field path, and
//! what was expected (a list, a map, a whole number, ...) or which size limit was breached.

use super::DeclarationError;

/// A parser error as the operator reads it: where, which field (`path`, when known), and what was
/// expected in words of the declaration rather than the parser's.
pub(super) fn syntax(
    err: &serde_saphyr::Error,
    path: Option<String>,
    limits: (usize, usize),
) -> DeclarationError {
    let (line, column) = err
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let message = first_line(&err.to_string());
    let detail = plain_words(&message, limits);
    // A key the parser refused before naming it is `?` in the path: the duplicate's own name.
    let path = path.map(|p| {
        let parent = p.strip_suffix('?').unwrap_or(&p).trim_end_matches('.');
        match message.strip_prefix("duplicate mapping key: ") {
            Some(rest) if p.ends_with('?') => {
                let key = rest.split(", ").next().unwrap_or(rest);
                if parent.is_empty() {
                    key.to_string()
                } else {
                    format!("{parent}.{key}")
                }
            }
            _ if p.ends_with('?') => parent.to_string(),
            // A located value (`Spanned`) reads its text as an inner `value`.
            _ => p.strip_suffix(".value").unwrap_or(&p).to_string(),
        }
    });
    let detail = match path.filter(|p| !p.is_empty() && p != ".") {
        Some(path) if !detail.contains(&path) => format!("{path}: {detail}"),
        _ => detail,
    };
    DeclarationError::Syntax {
        line,
        column,
        detail,
    }
}

/// The parser's wording turned into the declaration's: YAML sequences and mappings are lists and
/// maps, a duplicate key is just that, a breached budget names its limit.
fn plain_words(detail: &str, (max_nodes, max_events): (usize, usize)) -> String {
    if let Some(breach) = detail.strip_prefix("budget breached: ") {
        let kind = breach.split([' ', '{']).next().unwrap_or(breach);
        let limit = match kind {
            "Nodes" => format!("{max_nodes} YAML nodes (every key, value, list and map)"),
            "Events" => format!("{max_events} YAML parser events"),
            _ => format!("the parser's {kind} limit"),
        };
        return format!(
            "the declaration is too large to read: it exceeds {limit}; about 50 nodes make an \
             application with three client ids and three subscriptions"
        );
    }
    if let Some(rest) = detail.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(", ").next().unwrap_or(rest);
        return format!("`{key}` is given twice");
    }
    let words = [
        ("expected sequence start", "expected a list"),
        ("expected mapping start", "expected a map"),
        ("expected string scalar", "expected a string"),
        ("invalid u64", "expected a whole number (0 or more)"),
        ("invalid u32", "expected a whole number (0 or more)"),
        ("invalid u16", "expected a whole number (0 or more)"),
        ("invalid i64", "expected a whole number"),
        ("invalid i32", "expected a whole number"),
        ("invalid f64", "expected a number"),
        ("invalid boolean", "expected true or false"),
    ];
    for (library, plain) in words {
        if detail == library {
            return plain.to_string();
        }
    }
    let detail = detail
        .split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or(detail);
    detail.to_string()
}

/// The parser's message without the source snippet it may append and without its own
/// `error: line L column C:` prefix (the location is reported separately).
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message).trim();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    match line
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((location, detail)) if location.contains("column") => detail.to_string(),
        _ => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_messages_lose_their_location_prefix() {
        assert_eq!(
            first_line("error: line 3 column 5: unknown field `x`\n  |\n3 | x: 1"),
            "unknown field `x`"
        );
        assert_eq!(first_line("missing field `a`"), "missing field `a`");
    }
}
