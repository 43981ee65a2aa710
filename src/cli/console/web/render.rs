//! Rendering a page: the template with the session's user, anti-forgery token and the notice kept
//! for its next page (never carried in the URL), and the error page that names the field.

use minijinja::{context, Value};

use super::super::http::Response;
use super::super::store::{ConsoleError, Session};
use super::Web;

/// A message for the next page of a session.
#[derive(Debug, Clone, Default)]
pub struct Flash {
    pub notice: Option<String>,
    /// A client ID just added: (key manager, client ID), for the connection-data dialog.
    pub added: Option<(String, String)>,
    /// An API key just created: (name, the key), shown on this one page only.
    pub new_key: Option<(String, String)>,
}

impl Web {
    pub(super) fn render(&self, status: u16, name: &str, ctx: Value) -> Response {
        match self
            .templates
            .get_template(name)
            .and_then(|t| t.render(ctx))
        {
            Ok(body) => Response::html(status, body),
            Err(err) => Response::text(500, format!("template {name}: {err}")),
        }
    }

    pub(super) fn error_page(
        &self,
        session: Option<&Session>,
        err: &ConsoleError,
        back: &str,
    ) -> Response {
        let heading = match err {
            ConsoleError::Conflict(_) => "Changed by someone else",
            ConsoleError::Forbidden(_) => "Not allowed",
            ConsoleError::NotFound(_) => "Not found",
            ConsoleError::Invalid { .. } => "Refused: nothing changed",
            _ => "Something failed",
        };
        let user = session.map(|s| context! { name => s.name, admin => s.admin });
        self.render(
            err.status(),
            "error.html",
            context! {
                user => user,
                csrf => session.map(|s| s.csrf.clone()),
                heading => heading,
                field => err.field(),
                message => err.to_string(),
                back => back,
            },
        )
    }

    pub(super) fn base(&self, session: &Session, notice: Option<&str>) -> Value {
        context! {
            user => context! { name => session.name, admin => session.admin },
            csrf => session.csrf,
            notice => notice,
        }
    }

    pub(super) fn with(&self, session: &Session, flash: &Flash, extra: Value) -> Value {
        context! { ..extra, ..self.base(session, flash.notice.as_deref()) }
    }

    pub(super) fn set_flash(&self, session: &Session, flash: Flash) {
        if let Ok(mut all) = self.flash.lock() {
            // Bounded: one entry per session, and sessions that never come back are dropped.
            if all.len() > 10_000 {
                all.clear();
            }
            all.insert(session.id.clone(), flash);
        }
    }

    pub(super) fn take_flash(&self, session: &Session) -> Flash {
        self.flash
            .lock()
            .ok()
            .and_then(|mut all| all.remove(&session.id))
            .unwrap_or_default()
    }
}
