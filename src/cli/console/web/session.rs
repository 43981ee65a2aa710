//! Sessions: the session cookie, the sign-in callback (its `state` bound to the browser by a
//! cookie), and the headers every answer gets.

use super::super::auth::Identity;
use super::super::http::{Request, Response};
use super::super::store::{self, ConsoleError, Session};
use super::{Web, COOKIE, SIGNIN_COOKIE};

pub fn identity(session: &Session) -> Identity {
    Identity {
        sub: session.sub.clone(),
        name: session.name.clone(),
        admin: session.admin,
    }
}

/// Constant-time comparison of two tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Web {
    pub(super) fn session(&self, req: &Request) -> Option<Session> {
        let id = req.cookie(COOKIE)?;
        self.console
            .store
            .read(|conn| store::session(conn, &id))
            .ok()
            .flatten()
    }

    pub(super) fn cookie(&self, value: &str, max_age: i64) -> String {
        let secure = if self.console.secure_cookies {
            "; Secure"
        } else {
            ""
        };
        format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
    }

    /// The cookie binding a started sign-in (its `state`) to this browser.
    pub(super) fn signin_cookie(&self, state: &str, max_age: i64) -> String {
        let secure = if self.console.secure_cookies {
            "; Secure"
        } else {
            ""
        };
        format!(
            "{SIGNIN_COOKIE}={state}; Path=/auth; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
        )
    }

    pub(super) fn callback(&self, req: &Request) -> Response {
        if let Some(error) = req.query("error") {
            let err =
                ConsoleError::Forbidden(format!("the key manager did not sign you in: {error}"));
            return self.error_page(None, &err, "/signin");
        }
        let (Some(state), Some(code)) = (req.query("state"), req.query("code")) else {
            return self.error_page(None, &ConsoleError::Forbidden("no code".into()), "/signin");
        };
        // The sign-in must have been started in this browser.
        let started_here = req
            .cookie(SIGNIN_COOKIE)
            .is_some_and(|kept| same_token(&kept, state));
        if !started_here {
            let err = ConsoleError::Forbidden(
                "this sign-in was not started in this browser: sign in again".into(),
            );
            return self.error_page(None, &err, "/signin");
        }
        let result = self.console.auth.finish(state, code).and_then(|who| {
            self.console.store.read(|conn| {
                store::create_session(
                    conn,
                    &who.sub,
                    &who.name,
                    who.admin,
                    self.console.session_ttl_seconds,
                )
            })
        });
        match result {
            Ok(session) => Response::redirect("/")
                .with_header(
                    "set-cookie",
                    self.cookie(&session.id, self.console.session_ttl_seconds),
                )
                .with_header("set-cookie", self.signin_cookie("", 0)),
            Err(err) => self.error_page(None, &err, "/signin"),
        }
    }
}

pub fn parse_id(text: &str) -> Result<i64, ConsoleError> {
    text.parse()
        .map_err(|_| ConsoleError::NotFound(format!("no application {text}")))
}

pub fn security_headers(response: Response) -> Response {
    response
        .with_header("x-content-type-options", "nosniff".into())
        .with_header("x-frame-options", "DENY".into())
        .with_header("referrer-policy", "same-origin".into())
        .with_header("cache-control", "no-store".into())
}
