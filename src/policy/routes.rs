//! API base path + method + path template matching on the canonical request path.
//!
//! Rules (docs/plugin-config.md, "Routing rules", repeats them for operators):
//! - The API is the one whose base path is the longest segment-wise prefix of the path
//!   (`/pets/v1` matches `/pets/v1` and `/pets/v1/x`, never `/pets/v10`). Matching is case-sensitive.
//! - Within the API, a template matches the rest of the path: literal segments match themselves,
//!   `{name}` matches exactly one non-empty segment, a final `/*` matches zero or more segments.
//! - The most specific template that matches the path decides, whatever the method: more literal
//!   segments first, then more `{param}` segments, then a template without `/*` over one with it,
//!   then, left to right, a literal over a parameter over the wildcard. A request never falls to a
//!   less specific template because that one accepts its method: `POST /adm/secret` beside
//!   `GET /adm/secret` and `ANY /adm/{page}` is a 405, not the `{page}` rule.
//! - On that template the method picks the resource: the resource named for the method, then (for
//!   `HEAD` only) the `GET` resource, then `*`/`ANY`; at equal standing, declaration order. `HEAD` is
//!   matched as `GET` because servers answer `HEAD` by running the `GET` handler (RFC 9110 §9.3.2);
//!   an explicit `HEAD` resource on the same template is the operator's own rule for it.
//! - The request method must be an upper-case RFC 9110 token ([`check_method`]): methods are
//!   case-sensitive, but many frameworks upper-case them before dispatching, so `get` would run the
//!   `GET` handler under another rule. Anything else is refused (400 `method_not_canonical`).
//! - Case tricks are refused: if matching with ASCII case folded would pick a longer base path or a
//!   more specific resource than exact matching does, the path is refused (`case_variant`), because
//!   a case-insensitive upstream would serve that other resource.
//! - A trailing slash is significant: `/pets/` is matched only by a `/*` template (or, at the API
//!   root, by `/`). It never falls back to `/pets`, so it cannot reach a wider rule by accident.

//!
//! Cost: the API is found by walking a trie of base-path segments (one hash lookup per request
//! path segment, twice: exact and case-folded), so it does not grow with the number of APIs. Within
//! the API, only the templates that can match the path's first segment are tried: those starting
//! with that literal (one hash lookup) and those starting with a parameter or the wildcard.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::policy::path::{CanonicalPath, PathProblem};

/// One segment of a compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

/// A compiled resource path template such as `/pets/{id}` or `/files/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    segments: Vec<Segment>,
    wildcard: bool,
}

/// Orders templates by specificity; greater is more specific.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Specificity {
    literals: usize,
    params: usize,
    exact: bool,
    positions: Vec<u8>,
}

impl PathTemplate {
    /// Compile a template; the error says what is wrong with it.
    pub fn parse(template: &str) -> Result<PathTemplate, &'static str> {
        let body = template
            .strip_prefix('/')
            .ok_or("a path template must start with '/'")?;
        let mut segments = Vec::new();
        let mut wildcard = false;
        let mut names: Vec<&str> = Vec::new();
        if body.is_empty() {
            return Ok(PathTemplate { segments, wildcard });
        }
        let mut parts = body.split('/').peekable();
        while let Some(part) = parts.next() {
            let last = parts.peek().is_none();
            if part == "*" {
                if !last {
                    return Err("'*' is only allowed as the last segment");
                }
                wildcard = true;
            } else if let Some(inner) = part.strip_prefix('{') {
                let name = inner
                    .strip_suffix('}')
                    .ok_or("a parameter must be a whole segment such as {id}")?;
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err("a parameter name must be letters, digits, '_' or '-'");
                }
                if names.contains(&name) {
                    return Err("a parameter name is used twice");
                }
                names.push(name);
                segments.push(Segment::Param);
            } else {
                literal_segment(part)?;
                segments.push(Segment::Literal(part.to_string()));
            }
        }
        Ok(PathTemplate { segments, wildcard })
    }

    /// Does the template match these (API-relative) segments? `fold` compares literals ignoring
    /// ASCII case.
    fn matches(&self, segments: &[String], trailing_slash: bool, fold: bool) -> bool {
        if self.wildcard {
            if segments.len() < self.segments.len() {
                return false;
            }
        } else {
            if segments.len() != self.segments.len() {
                return false;
            }
            // A trailing slash only matches the API root (`/`) or a wildcard.
            if trailing_slash && !self.segments.is_empty() {
                return false;
            }
        }
        self.segments
            .iter()
            .zip(segments)
            .all(|(want, got)| match want {
                Segment::Literal(text) => same(text, got, fold),
                Segment::Param => !got.is_empty(),
            })
    }

    fn specificity(&self) -> Specificity {
        let literals = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        let mut positions: Vec<u8> = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 2,
                Segment::Param => 1,
            })
            .collect();
        if self.wildcard {
            positions.push(0);
        }
        Specificity {
            literals,
            params: self.segments.len() - literals,
            exact: !self.wildcard,
            positions,
        }
    }
}

fn same(a: &str, b: &str, fold: bool) -> bool {
    if fold {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// Check a literal segment of a template or base path. Only characters that a request path can
/// carry unescaped (and that the path hygiene does not refuse) are allowed, so a literal can match.
pub fn literal_segment(part: &str) -> Result<(), &'static str> {
    if part.is_empty() {
        return Err("empty segment ('//' or a trailing '/')");
    }
    if part == "." || part == ".." {
        return Err("'.' and '..' segments are not allowed");
    }
    if part.ends_with('.') {
        // Request paths with such a segment are refused (`trailing_dot_or_space`): it could never
        // match.
        return Err("a segment must not end with '.'");
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()+,=:@".contains(&b);
    if !part.bytes().all(allowed) {
        return Err("a literal segment may hold only letters, digits and -._~!$&'()+,=:@");
    }
    Ok(())
}

/// Compile an API base path into its segments. `/` is the empty list.
pub fn parse_base_path(base_path: &str) -> Result<Vec<String>, &'static str> {
    let body = base_path
        .strip_prefix('/')
        .ok_or("a base path must start with '/'")?;
    if body.is_empty() {
        return Ok(Vec::new());
    }
    if body.ends_with('/') {
        return Err("a base path must not end with '/'");
    }
    body.split('/')
        .map(|part| literal_segment(part).map(|()| part.to_string()))
        .collect()
}

/// Which methods a resource accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodMatch {
    Any,
    Exact(String),
}

impl MethodMatch {
    /// `*` or `ANY` is every method; otherwise an upper-case HTTP method token.
    pub fn parse(method: &str) -> Result<MethodMatch, &'static str> {
        if method == "*" || method == "ANY" {
            return Ok(MethodMatch::Any);
        }
        if method.is_empty() || method.len() > 32 {
            return Err("a method must be 1 to 32 characters");
        }
        if check_method(method).is_err() {
            return Err("a method is an upper-case HTTP token such as GET, or '*' / 'ANY'");
        }
        Ok(MethodMatch::Exact(method.to_string()))
    }

    fn is_exactly(&self, method: &str) -> bool {
        matches!(self, MethodMatch::Exact(m) if m == method)
    }
}

/// Why a request's method is refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodProblem {
    /// Empty, or a byte outside the RFC 9110 `tchar` set.
    NotToken,
    /// Holds a lower-case letter (`get`, `Get`): an upstream that upper-cases methods would run
    /// the handler of another method than the one keygate matched.
    NotUpperCase,
}

impl MethodProblem {
    pub fn code(&self) -> &'static str {
        match self {
            MethodProblem::NotToken => "not_token",
            MethodProblem::NotUpperCase => "not_upper_case",
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            MethodProblem::NotToken => "the request method is not an HTTP token",
            MethodProblem::NotUpperCase => "the request method must be upper case (GET, not get)",
        }
    }
}

/// Check a request method: a non-empty RFC 9110 token (`tchar`s) without lower-case letters.
pub fn check_method(method: &str) -> Result<(), MethodProblem> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if method.is_empty() || !method.bytes().all(tchar) {
        return Err(MethodProblem::NotToken);
    }
    if method.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(MethodProblem::NotUpperCase);
    }
    Ok(())
}

/// What the router found. Indices refer to the configuration's `apis` and their `resources`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOutcome {
    Matched {
        api: usize,
        resource: usize,
    },
    NoApi,
    ResourceNotFound {
        api: usize,
    },
    MethodNotAllowed {
        api: usize,
        allow: Vec<String>,
    },
    /// The path is refused before any API is chosen.
    Refused(PathProblem),
}

#[derive(Debug, Clone)]
struct ResourceRoute {
    resource: usize,
    rank: Specificity,
    method: MethodMatch,
    template: PathTemplate,
}

#[derive(Debug, Clone)]
struct ApiRoutes {
    api: usize,
    /// Most specific first, so the first match wins.
    resources: Vec<ResourceRoute>,
    /// Indices into `resources` (ascending, so most specific first) of the templates whose first
    /// segment is a given literal, as written and with ASCII case folded to lower case.
    first_literal: Lists,
    first_literal_folded: Lists,
    /// The same for every other template (first segment a parameter, the wildcard, or none); all
    /// of them when the API has too few templates for the index to pay.
    first_other: Vec<usize>,
    /// Whether a literal of a template has an upper-case letter (else, for a path without one,
    /// matching with case folded finds what exact matching does).
    upper_literals: bool,
}

/// Up to this many templates, an API's are tried one by one (cheaper than two hash lookups).
const SCAN_UP_TO: usize = 8;

fn has_upper(segment: &str) -> bool {
    segment.bytes().any(|b| b.is_ascii_uppercase())
}

impl ApiRoutes {
    fn new(api: usize, resources: Vec<ResourceRoute>) -> ApiRoutes {
        let mut routes = ApiRoutes {
            api,
            resources: Vec::new(),
            first_literal: Lists::default(),
            first_literal_folded: Lists::default(),
            first_other: Vec::new(),
            upper_literals: resources.iter().any(|r| {
                r.template.segments.iter().any(|s| match s {
                    Segment::Literal(text) => has_upper(text),
                    Segment::Param => false,
                })
            }),
        };
        let index = resources.len() > SCAN_UP_TO;
        for (i, route) in resources.iter().enumerate() {
            match route.template.segments.first() {
                Some(Segment::Literal(text)) if index => {
                    routes.first_literal.push(text.clone(), i);
                    routes
                        .first_literal_folded
                        .push(text.to_ascii_lowercase(), i);
                }
                _ => routes.first_other.push(i),
            }
        }
        routes.resources = resources;
        routes
    }

    /// The templates that can match a path whose API-relative segments start with `first`, most
    /// specific first; with `fold`, also those that match only once ASCII case is folded.
    fn candidates(
        &self,
        first: Option<&String>,
        fold: bool,
    ) -> impl Iterator<Item = &ResourceRoute> {
        let literal = first.filter(|_| !self.first_literal.is_empty());
        let literal = literal.map_or(&[][..], |segment| {
            if fold {
                self.first_literal_folded.get(&folded(segment))
            } else {
                self.first_literal.get(segment)
            }
        });
        let mut a = literal.iter().peekable();
        let mut b = self.first_other.iter().peekable();
        // Merge two ascending lists (disjoint: a template is in exactly one).
        std::iter::from_fn(move || match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x > y => b.next(),
            (Some(_), _) => a.next(),
            (None, _) => b.next(),
        })
        .filter_map(|&i| self.resources.get(i))
    }
}

/// Lists of indices by string key. The maps here are all `HashMap<String, usize>` (as the
/// policy's client ids are): one copy of the hash map code in the module.
#[derive(Debug, Clone, Default)]
struct Lists {
    index: HashMap<String, usize>,
    lists: Vec<Vec<usize>>,
}

impl Lists {
    fn push(&mut self, key: String, value: usize) {
        let next = self.lists.len();
        let at = *self.index.entry(key).or_insert(next);
        if at == next {
            self.lists.push(Vec::new());
        }
        if let Some(list) = self.lists.get_mut(at) {
            list.push(value);
        }
    }

    fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn get(&self, key: &str) -> &[usize] {
        self.index
            .get(key)
            .and_then(|&at| self.lists.get(at))
            .map_or(&[], Vec::as_slice)
    }
}

/// A segment with ASCII case folded to lower case (borrowed when it has no upper-case letter).
fn folded(segment: &str) -> Cow<'_, str> {
    if has_upper(segment) {
        Cow::Owned(segment.to_ascii_lowercase())
    } else {
        Cow::Borrowed(segment)
    }
}

/// A trie of base-path segments: the node reached by a path's first segments knows the first API
/// added whose base path is exactly those segments. Node 0 is the root (base path `/`).
#[derive(Debug, Clone)]
struct BaseTrie {
    nodes: Vec<BaseNode>,
}

#[derive(Debug, Clone, Default)]
struct BaseNode {
    /// Segment → index into `BaseTrie::nodes`.
    children: HashMap<String, usize>,
    /// Index into `Router::apis` of the first API added with this base path.
    api: Option<usize>,
}

impl Default for BaseTrie {
    fn default() -> BaseTrie {
        BaseTrie {
            nodes: vec![BaseNode::default()],
        }
    }
}

impl BaseTrie {
    fn insert(&mut self, base: impl Iterator<Item = String>, api: usize) {
        let mut at = 0;
        for segment in base {
            let next = self.nodes.len();
            let Some(node) = self.nodes.get_mut(at) else {
                return;
            };
            at = *node.children.entry(segment).or_insert(next);
            if at == next {
                self.nodes.push(BaseNode::default());
            }
        }
        if let Some(node) = self.nodes.get_mut(at) {
            node.api.get_or_insert(api);
        }
    }

    /// The API of the deepest node on the path's segments that ends a base path, and its depth.
    /// With `fold`, the trie's keys are lower case and so is each segment looked up.
    fn deepest(&self, segments: &[String], fold: bool) -> Option<(usize, usize)> {
        let mut node = self.nodes.first()?;
        let mut best = node.api.map(|api| (api, 0));
        for (depth, segment) in segments.iter().enumerate() {
            let next = if fold {
                node.children.get(folded(segment).as_ref())
            } else {
                node.children.get(segment.as_str())
            };
            let Some(next) = next.and_then(|&at| self.nodes.get(at)) else {
                break;
            };
            node = next;
            if let Some(api) = node.api {
                best = Some((api, depth + 1));
            }
        }
        best
    }
}

/// The compiled matcher for every API.
#[derive(Debug, Clone, Default)]
pub struct Router {
    /// In the order added.
    apis: Vec<ApiRoutes>,
    /// Base paths as written.
    exact: BaseTrie,
    /// Base paths with ASCII case folded (to lower case), for the `case_variant` check.
    folded: BaseTrie,
    /// Whether a base path has an upper-case letter (else, for a path without one, `folded`
    /// finds what `exact` does).
    upper_bases: bool,
}

impl Router {
    /// Add API `api` (its index in the configuration) with its parsed base path and its resources'
    /// (index, method, template), in declaration order.
    pub fn add(
        &mut self,
        api: usize,
        base: Vec<String>,
        resources: Vec<(usize, MethodMatch, PathTemplate)>,
    ) {
        let mut resources: Vec<ResourceRoute> = resources
            .into_iter()
            .map(|(resource, method, template)| ResourceRoute {
                resource,
                rank: template.specificity(),
                method,
                template,
            })
            .collect();
        // Stable sort: at equal specificity a named method beats `*`, then declaration order.
        resources.sort_by_cached_key(|r| {
            (
                std::cmp::Reverse(r.rank.clone()),
                r.method == MethodMatch::Any,
            )
        });
        let at = self.apis.len();
        self.upper_bases |= base.iter().any(|s| has_upper(s));
        self.folded
            .insert(base.iter().map(|s| s.to_ascii_lowercase()), at);
        self.exact.insert(base.into_iter(), at);
        self.apis.push(ApiRoutes::new(api, resources));
    }

    /// Find the API, then the resource, for a method and a canonical path.
    pub fn find(&self, method: &str, path: &CanonicalPath) -> RouteOutcome {
        let segments = path.segments.as_slice();
        // The longest base path that is a segment-wise prefix; among equal ones, the first added.
        let exact = self.exact.deepest(segments, false);
        // Without an upper-case letter in the path nor in the base paths (or templates), folding
        // case changes nothing and the folded lookup is skipped.
        let upper_path = segments.iter().any(|s| has_upper(s));
        // A longer base path matches only once case is folded (`None` sorts below every depth).
        if (upper_path || self.upper_bases)
            && self.folded.deepest(segments, true).map(|(_, depth)| depth) > exact.map(|(_, d)| d)
        {
            return RouteOutcome::Refused(PathProblem::CaseVariant);
        }
        let Some((api, rest)) =
            exact.and_then(|(api, depth)| Some((self.apis.get(api)?, segments.get(depth..)?)))
        else {
            return RouteOutcome::NoApi;
        };
        // The same for resources, by any method: a more specific template that matches only once
        // case is folded means exact matching would fall to a wider rule.
        let best = |fold: bool| {
            api.candidates(rest.first(), fold)
                .find(|r| r.template.matches(rest, path.trailing_slash, fold))
                .map(|r| &r.rank)
        };
        let exact = best(false);
        if (upper_path || api.upper_literals) && best(true) > exact {
            return RouteOutcome::Refused(PathProblem::CaseVariant);
        }
        let Some(rank) = exact else {
            return RouteOutcome::ResourceNotFound { api: api.api };
        };
        // Only the resources on that most specific template decide (templates of equal rank that
        // match the same path are the same template). They are in order: named methods first,
        // then declaration order.
        let on_template: Vec<&ResourceRoute> = api
            .candidates(rest.first(), false)
            .filter(|r| r.rank == *rank && r.template.matches(rest, path.trailing_slash, false))
            .collect();
        let named = |m: &str| on_template.iter().find(|r| r.method.is_exactly(m));
        let chosen = named(method)
            .or_else(|| if method == "HEAD" { named("GET") } else { None })
            .or_else(|| on_template.iter().find(|r| r.method == MethodMatch::Any));
        if let Some(route) = chosen {
            return RouteOutcome::Matched {
                api: api.api,
                resource: route.resource,
            };
        }
        let mut allow: Vec<String> = Vec::new();
        for route in &on_template {
            if let MethodMatch::Exact(m) = &route.method {
                if !allow.contains(m) {
                    allow.push(m.clone());
                }
            }
        }
        // HEAD is served wherever GET is.
        if allow.iter().any(|m| m == "GET") && !allow.iter().any(|m| m == "HEAD") {
            allow.push("HEAD".to_string());
        }
        allow.sort_unstable();
        RouteOutcome::MethodNotAllowed {
            api: api.api,
            allow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(apis: &[(&str, &[(&str, &str)])]) -> Router {
        let mut router = Router::default();
        for (api, (base, resources)) in apis.iter().enumerate() {
            let resources = resources
                .iter()
                .enumerate()
                .map(|(r, (method, template))| {
                    let method = MethodMatch::parse(method).unwrap();
                    (r, method, PathTemplate::parse(template).unwrap())
                })
                .collect();
            router.add(api, parse_base_path(base).unwrap(), resources);
        }
        router
    }

    fn find(r: &Router, method: &str, path: &str) -> RouteOutcome {
        r.find(method, &CanonicalPath::parse(path).unwrap())
    }

    fn hit(api: usize, resource: usize) -> RouteOutcome {
        RouteOutcome::Matched { api, resource }
    }

    #[test]
    fn templates_parse_or_say_why() {
        for good in [
            "/",
            "/pets",
            "/pets/{id}",
            "/files/*",
            "/*",
            "/a/{x}/b/{y}",
            "/v1:search",
        ] {
            assert!(PathTemplate::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "", "pets", "/pets/", "//pets", "/a/*/b", "/{id", "/{}", "/{a}/{a}", "/a b", "/a%2F",
            "/a/../b", "/x{id}", "/a?b", "/a;b", "/a#", "/*.txt",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base_paths() {
        assert_eq!(parse_base_path("/"), Ok(vec![]));
        assert_eq!(
            parse_base_path("/pets/v1"),
            Ok(vec!["pets".into(), "v1".into()])
        );
        assert!(parse_base_path("/pets/").is_err());
        assert!(parse_base_path("pets").is_err());
        assert!(parse_base_path("/a//b").is_err());
    }

    #[test]
    fn methods() {
        assert_eq!(MethodMatch::parse("*"), Ok(MethodMatch::Any));
        assert_eq!(MethodMatch::parse("ANY"), Ok(MethodMatch::Any));
        assert!(MethodMatch::parse("GET").is_ok());
        assert!(MethodMatch::parse("get").is_err());
        assert!(MethodMatch::parse("").is_err());
        assert!(MethodMatch::parse("G T").is_err());
    }

    #[test]
    fn longest_base_path_on_segment_boundary() {
        let r = router(&[
            ("/pets", &[("GET", "/*")]),
            ("/pets/v1", &[("GET", "/*")]),
            ("/", &[("GET", "/*")]),
        ]);
        assert_eq!(find(&r, "GET", "/pets/v1/x"), hit(1, 0));
        assert_eq!(find(&r, "GET", "/pets/v1"), hit(1, 0));
        assert_eq!(find(&r, "GET", "/pets/v10"), hit(0, 0));
        assert_eq!(find(&r, "GET", "/other"), hit(2, 0));
        let r = router(&[("/pets/v1", &[("GET", "/*")])]);
        assert_eq!(find(&r, "GET", "/pets/v10"), RouteOutcome::NoApi);
        assert_eq!(
            find(&r, "GET", "/PETS/v1"),
            RouteOutcome::Refused(PathProblem::CaseVariant)
        );
        assert_eq!(find(&r, "GET", "/pets"), RouteOutcome::NoApi);
    }

    #[test]
    fn nested_and_repeated_base_paths() {
        let r = router(&[
            ("/a", &[("GET", "/*")]),
            ("/a/b/c", &[("GET", "/*")]),
            ("/x/y", &[("GET", "/*")]),
            ("/x/y", &[("GET", "/*")]),
        ]);
        assert_eq!(find(&r, "GET", "/a/b"), hit(0, 0));
        assert_eq!(find(&r, "GET", "/a/b/c/d"), hit(1, 0));
        assert_eq!(find(&r, "GET", "/a/b/cd"), hit(0, 0));
        // Equal base paths: the first added decides.
        assert_eq!(find(&r, "GET", "/x/y/z"), hit(2, 0));
        assert_eq!(find(&r, "GET", "/x"), RouteOutcome::NoApi);
        assert_eq!(find(&r, "GET", "/"), RouteOutcome::NoApi);
        let refused = RouteOutcome::Refused(PathProblem::CaseVariant);
        assert_eq!(find(&r, "GET", "/a/B/c"), refused);
        assert_eq!(find(&r, "GET", "/X/y"), refused);
        assert_eq!(find(&r, "GET", "/a/B/x"), hit(0, 0));
    }

    #[test]
    fn candidates_hold_every_template_that_matches() {
        let templates = [
            "/", "/*", "/a", "/A", "/a/*", "/{x}", "/{x}/b", "/a/b", "/A/b", "/b/{y}", "/{x}/*",
        ];
        let resources = templates
            .iter()
            .enumerate()
            .map(|(i, t)| (i, MethodMatch::Any, PathTemplate::parse(t).unwrap()))
            .collect();
        let mut r = Router::default();
        r.add(0, vec![], resources);
        let api = &r.apis[0];
        let segments = ["a", "A", "b", "B", "c"];
        let mut paths: Vec<Vec<String>> = vec![vec![]];
        for x in segments {
            paths.push(vec![x.into()]);
            for y in segments {
                paths.push(vec![x.into(), y.into()]);
            }
        }
        for path in &paths {
            for trailing in [false, true] {
                for fold in [false, true] {
                    let found: Vec<usize> = api
                        .candidates(path.first(), fold)
                        .filter(|r| r.template.matches(path, trailing, fold))
                        .map(|r| r.resource)
                        .collect();
                    let all: Vec<usize> = api
                        .resources
                        .iter()
                        .filter(|r| r.template.matches(path, trailing, fold))
                        .map(|r| r.resource)
                        .collect();
                    assert_eq!(found, all, "{path:?} trailing {trailing} fold {fold}");
                }
            }
        }
    }

    #[test]
    fn most_specific_template_wins() {
        let r = router(&[(
            "/api",
            &[
                ("GET", "/*"),
                ("GET", "/pets/*"),
                ("GET", "/pets/{id}"),
                ("GET", "/pets/mine"),
                ("GET", "/pets"),
                ("GET", "/a/{x}/c"),
                ("GET", "/a/b/*"),
            ],
        )]);
        assert_eq!(find(&r, "GET", "/api/pets/mine"), hit(0, 3));
        assert_eq!(find(&r, "GET", "/api/pets/7"), hit(0, 2));
        assert_eq!(find(&r, "GET", "/api/pets/7/toys"), hit(0, 1));
        assert_eq!(find(&r, "GET", "/api/pets"), hit(0, 4));
        assert_eq!(find(&r, "GET", "/api/pets/"), hit(0, 1));
        assert_eq!(find(&r, "GET", "/api/zoo"), hit(0, 0));
        assert_eq!(find(&r, "GET", "/api"), hit(0, 0));
        // Equal literal counts: more params wins over a wildcard.
        assert_eq!(find(&r, "GET", "/api/a/b/c"), hit(0, 5));
    }

    #[test]
    fn ties_break_left_to_right_then_declaration_order() {
        let r = router(&[("/", &[("GET", "/{x}/b"), ("GET", "/a/{y}")])]);
        assert_eq!(find(&r, "GET", "/a/b"), hit(0, 1));
        let r = router(&[("/", &[("GET", "/{x}"), ("GET", "/{y}")])]);
        assert_eq!(find(&r, "GET", "/a"), hit(0, 0));
    }

    #[test]
    fn trailing_slash_is_significant() {
        let r = router(&[(
            "/api",
            &[("GET", "/"), ("GET", "/pets"), ("GET", "/pets/{id}")],
        )]);
        assert_eq!(find(&r, "GET", "/api/"), hit(0, 0));
        assert_eq!(find(&r, "GET", "/api"), hit(0, 0));
        assert_eq!(find(&r, "GET", "/api/pets"), hit(0, 1));
        assert_eq!(
            find(&r, "GET", "/api/pets/"),
            RouteOutcome::ResourceNotFound { api: 0 }
        );
        assert_eq!(find(&r, "GET", "/api/pets/1"), hit(0, 2));
    }

    #[test]
    fn methods_and_allow() {
        let r = router(&[(
            "/api",
            &[
                ("GET", "/pets"),
                ("POST", "/pets"),
                ("GET", "/pets/{id}"),
                ("*", "/any"),
            ],
        )]);
        assert_eq!(find(&r, "POST", "/api/pets"), hit(0, 1));
        assert_eq!(
            find(&r, "DELETE", "/api/pets"),
            RouteOutcome::MethodNotAllowed {
                api: 0,
                allow: vec!["GET".into(), "HEAD".into(), "POST".into()]
            }
        );
        // Methods are case-sensitive.
        assert!(matches!(
            find(&r, "get", "/api/pets"),
            RouteOutcome::MethodNotAllowed { .. }
        ));
        assert_eq!(find(&r, "PATCH", "/api/any"), hit(0, 3));
        assert_eq!(
            find(&r, "GET", "/api/nothing"),
            RouteOutcome::ResourceNotFound { api: 0 }
        );
    }

    #[test]
    fn a_named_method_beats_any_on_the_same_template() {
        let r = router(&[("/api", &[("ANY", "/pets"), ("GET", "/pets")])]);
        assert_eq!(find(&r, "GET", "/api/pets"), hit(0, 1));
        assert_eq!(find(&r, "PUT", "/api/pets"), hit(0, 0));
    }

    #[test]
    fn a_less_specific_template_never_takes_a_method_the_specific_one_lacks() {
        // The issue 11 example: `ANY /adm/{page}` is weaker than `GET /adm/secret`.
        let r = router(&[("/", &[("GET", "/adm/secret"), ("ANY", "/adm/{page}")])]);
        assert_eq!(find(&r, "GET", "/adm/secret"), hit(0, 0));
        assert_eq!(find(&r, "HEAD", "/adm/secret"), hit(0, 0));
        let gets = RouteOutcome::MethodNotAllowed {
            api: 0,
            allow: vec!["GET".into(), "HEAD".into()],
        };
        assert_eq!(find(&r, "POST", "/adm/secret"), gets);
        assert_eq!(find(&r, "DELETE", "/adm/secret"), gets);
        assert_eq!(find(&r, "POST", "/adm/other"), hit(0, 1));
        // A wildcard template is no fallback for a method either.
        let r = router(&[("/api", &[("GET", "/pets/{id}"), ("ANY", "/pets/*")])]);
        assert!(matches!(
            find(&r, "DELETE", "/api/pets/1"),
            RouteOutcome::MethodNotAllowed { .. }
        ));
        assert_eq!(find(&r, "DELETE", "/api/pets/1/toys"), hit(0, 1));
    }

    #[test]
    fn head_is_matched_as_get() {
        let r = router(&[(
            "/",
            &[
                ("GET", "/a"),
                ("ANY", "/a"),
                ("GET", "/b"),
                ("HEAD", "/b"),
                ("POST", "/c"),
                ("ANY", "/d"),
                ("GET", "/{x}"),
            ],
        )]);
        // GET beats ANY on the same template for HEAD, as it does for GET.
        assert_eq!(find(&r, "HEAD", "/a"), hit(0, 0));
        assert_eq!(find(&r, "PUT", "/a"), hit(0, 1));
        // An explicit HEAD resource is the operator's rule for HEAD.
        assert_eq!(find(&r, "HEAD", "/b"), hit(0, 3));
        assert_eq!(find(&r, "GET", "/b"), hit(0, 2));
        // No GET on the template: HEAD is not allowed there, and never falls to `GET /{x}`.
        assert_eq!(
            find(&r, "HEAD", "/c"),
            RouteOutcome::MethodNotAllowed {
                api: 0,
                allow: vec!["POST".into()]
            }
        );
        assert_eq!(find(&r, "HEAD", "/d"), hit(0, 5));
        assert_eq!(find(&r, "HEAD", "/e"), hit(0, 6));
    }

    #[test]
    fn request_methods_must_be_upper_case_tokens() {
        for good in ["GET", "HEAD", "PURGE", "M-SEARCH", "BREW2", "X_Y"] {
            assert_eq!(check_method(good), Ok(()), "{good}");
        }
        for (bad, problem) in [
            ("get", MethodProblem::NotUpperCase),
            ("Get", MethodProblem::NotUpperCase),
            ("gET", MethodProblem::NotUpperCase),
            ("", MethodProblem::NotToken),
            ("GET ", MethodProblem::NotToken),
            ("G\u{0}T", MethodProblem::NotToken),
            ("G/T", MethodProblem::NotToken),
            ("G\u{c9}T", MethodProblem::NotToken),
        ] {
            assert_eq!(check_method(bad), Err(problem), "{bad:?}");
        }
    }

    #[test]
    fn params_match_decoded_segments() {
        let r = router(&[("/api", &[("GET", "/admin"), ("GET", "/{page}")])]);
        // `%61dmin` is `admin` to a decoding upstream, so it must hit the `/admin` rule.
        assert_eq!(find(&r, "GET", "/api/%61dmin"), hit(0, 0));
        assert_eq!(find(&r, "GET", "/api/other"), hit(0, 1));
    }

    #[test]
    fn case_tricks_are_refused() {
        let r = router(&[
            ("/", &[("GET", "/*")]),
            (
                "/api",
                &[("GET", "/admin"), ("GET", "/{page}"), ("GET", "/Files/*")],
            ),
        ]);
        let refused = RouteOutcome::Refused(PathProblem::CaseVariant);
        // Would fall from the /api API to the root API.
        assert_eq!(find(&r, "GET", "/API/admin"), refused);
        // Would fall from /admin to the {page} parameter.
        assert_eq!(find(&r, "GET", "/api/Admin"), refused);
        assert_eq!(find(&r, "GET", "/api/%41dmin"), refused);
        // Also when the method is not accepted: a 405 must not hide the trick either.
        assert_eq!(find(&r, "POST", "/api/ADMIN"), refused);
        assert_eq!(find(&r, "GET", "/api/files/x"), refused);
        // Case differences that do not change the choice are fine.
        assert_eq!(find(&r, "GET", "/api/Other"), hit(1, 1));
        assert_eq!(find(&r, "GET", "/api/Files/x"), hit(1, 2));
        assert_eq!(find(&r, "GET", "/Elsewhere"), hit(0, 0));
        // Templates that differ only in case are each reachable by their exact spelling.
        let r = router(&[("/api", &[("GET", "/Admin"), ("GET", "/admin")])]);
        assert_eq!(find(&r, "GET", "/api/admin"), hit(0, 1));
        assert_eq!(find(&r, "GET", "/api/Admin"), hit(0, 0));
        let r = router(&[("/Pets", &[("GET", "/")]), ("/pets", &[("GET", "/")])]);
        assert_eq!(find(&r, "GET", "/pets"), hit(1, 0));
    }
}
