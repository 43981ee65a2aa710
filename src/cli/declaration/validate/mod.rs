//! Reading a declaration and the checks only the CLI can make. Every error names the field (as a
//! path such as `applications[1].client_ids[0].client_id`) and the line, so the operator can jump
//! to it.
//!
//! The rules about what the filter accepts are not here: `generate` builds the plugin config and
//! runs the filter's own compiler on it ([`crate::policy::Policy::from_json`]);
//! [`refused`](fn@refused) maps each of its field paths back to the declaration's line. What stays
//! here is what the plugin config does not carry: listener and admin addresses, well-known and
//! upstream URLs, the claim-mapping preset's name.
//!
//! This file reads a declaration ([`parse`] and its variants); the rest is in `syntax` (the
//! parser's errors in the declaration's words), `check` and `istio_block` (the CLI's own checks),
//! `refused` (the filter's verdict placed on the declaration's lines) and `error`
//! ([`DeclarationError`]).

mod check;
mod error;
mod istio_block;
mod refused;
mod syntax;

use crate::cli::declaration::model::Declaration;

pub use check::check;
pub use error::{DeclarationError, IstioProblem, ValueProblem};
pub use istio_block::parse_sha256;
use refused::sort_by_line;
pub use refused::{line_of_field, refused};
use syntax::syntax;

/// Parses a declaration and runs the CLI's own checks ([`check`](fn@check)); all problems found
/// are returned, in source order. The filter's rules run later, on the plugin config
/// (`generate::load`).
pub fn parse(text: &str) -> Result<Declaration, Vec<DeclarationError>> {
    parse_with(text, false)
}

/// The YAML parser's budget: far above serde-saphyr's defaults (250,000 nodes, 1,000,000 events),
/// which a declaration of about 9,000 applications exceeds. An application with three client ids
/// and three subscriptions is about 50 nodes: these fit 400,000 of them (a directory source
/// serves that many; `make bench-scale` parses 100,000 in a few seconds).
pub const MAX_YAML_NODES: usize = 20_000_000;
pub const MAX_YAML_EVENTS: usize = 40_000_000;

/// `parse`, with `--allow-http` applied to every key manager's URLs.
pub fn parse_with(text: &str, allow_http: bool) -> Result<Declaration, Vec<DeclarationError>> {
    parse_limited(text, allow_http, (MAX_YAML_NODES, MAX_YAML_EVENTS))
}

/// [`parse_with`] under another parser budget (nodes, events): what a breach says, checked
/// without building a declaration of twenty million nodes.
pub fn parse_limited(
    text: &str,
    allow_http: bool,
    (max_nodes, max_events): (usize, usize),
) -> Result<Declaration, Vec<DeclarationError>> {
    if text.trim().is_empty()
        || text.lines().all(|line| {
            let line = line.trim();
            line.is_empty() || line.starts_with('#') || line == "---"
        })
    {
        return Err(vec![DeclarationError::Syntax {
            line: 1,
            column: 1,
            detail: "the declaration is empty: it needs at least `gateway: {environment: NAME}`"
                .to_string(),
        }]);
    }
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = max_nodes;
    budget.max_events = max_events;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    let mut path = None;
    let parsed = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize::<_, Declaration>(de).map_err(|err| {
            path = Some(err.path().to_string());
            err.into_inner()
        })
    });
    let declaration = parsed.map_err(|err| vec![syntax(&err, path, (max_nodes, max_events))])?;
    let mut errors = check(&declaration, allow_http);
    if errors.is_empty() {
        Ok(declaration)
    } else {
        sort_by_line(&mut errors);
        Err(errors)
    }
}
