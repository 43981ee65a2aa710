//! The whole state (export, import), the audit log, the application directory's change log and
//! the sign-in sessions.

use super::apps::{applications, expiry_text, state_text};
use super::db::{args, Db, Lock};
use super::docs::{gateway, insert, key_managers, list, set_gateway, Doc};
use super::{
    application, now, random_token, AuditEntry, ConsoleError, Result, Session, DIRECTORY_HISTORY,
};
use crate::cli::console::model::{Api, Application, Export, Tier};

/// The store as a declaration.
pub fn export(conn: &Db) -> Result<Export> {
    Ok(Export {
        gateway: gateway(conn)?.unwrap_or_default(),
        key_managers: key_managers(conn)?
            .into_iter()
            .map(|row| row.key_manager)
            .collect(),
        tiers: list::<Tier>(conn, Doc::Tiers)?
            .into_iter()
            .map(|v| v.item)
            .collect(),
        apis: list::<Api>(conn, Doc::Apis)?
            .into_iter()
            .map(|v| v.item)
            .collect(),
        applications: applications(conn, None)?
            .into_iter()
            .map(|row| row.application)
            .collect(),
    })
}

/// Replaces everything with a declaration's contents (import). Developer-portal flags of key
/// managers that stay are kept. The directory history restarts with one upsert per application.
pub fn replace_all(conn: &Db, export: &Export) -> Result<()> {
    let enabled: Vec<String> = key_managers(conn)?
        .into_iter()
        .filter(|row| row.developer_portal)
        .map(|row| row.key_manager.name)
        .collect();
    let before: Vec<String> = applications(conn, None)?
        .into_iter()
        .map(|row| row.application.name)
        .collect();
    conn.batch(
        "DELETE FROM api_keys; DELETE FROM subscriptions; DELETE FROM client_ids;
         DELETE FROM applications;
         DELETE FROM key_managers; DELETE FROM apis; DELETE FROM tiers;",
    )?;
    set_gateway(conn, &export.gateway)?;
    for km in &export.key_managers {
        insert(conn, Doc::KeyManagers, &km.name, km)?;
        if enabled.contains(&km.name) {
            conn.execute(
                "UPDATE key_managers SET devportal = 1 WHERE name = ?1",
                args![&km.name],
            )?;
        }
    }
    for tier in &export.tiers {
        insert(conn, Doc::Tiers, &tier.name, tier)?;
    }
    for api in &export.apis {
        insert(conn, Doc::Apis, &api.name, api)?;
    }
    for app in &export.applications {
        let state = state_text(&app.state);
        let id = conn
            .query_one(
                "INSERT INTO applications (name, owner, version, state) VALUES (?1, ?2, 1, ?3)
                 RETURNING id",
                args![&app.name, &app.owner, &state],
            )
            .map_err(|_| {
                ConsoleError::invalid("applications", format!("`{}` appears twice", app.name))
            })?
            .int(0)?;
        for c in &app.client_ids {
            conn.execute(
                "INSERT INTO client_ids (key_manager, client_id, application_id) VALUES (?1, ?2, ?3)",
                args![&c.key_manager, &c.client_id, id],
            )
            .map_err(|_| {
                ConsoleError::invalid(
                    "client_ids",
                    format!(
                        "client ID `{}` of `{}` is in two applications",
                        c.client_id, c.key_manager
                    ),
                )
            })?;
        }
        for s in &app.subscriptions {
            let state = state_text(&s.state);
            conn.execute(
                "INSERT INTO subscriptions (application_id, api, state, tier) VALUES (?1, ?2, ?3, ?4)",
                args![id, &s.api, &state, &s.tier],
            )?;
        }
        for k in &app.api_keys {
            let expires = k.expires.as_ref().map(expiry_text);
            conn.execute(
                "INSERT INTO api_keys (application_id, name, sha256, expires) VALUES (?1, ?2, ?3, ?4)",
                args![id, &k.name, &k.sha256, &expires],
            )
            .map_err(|_| {
                ConsoleError::invalid(
                    "api_keys",
                    format!("API key `{}` of `{}` appears twice", k.name, app.name),
                )
            })?;
        }
    }
    for name in before {
        if !export.applications.iter().any(|a| a.name == name) {
            record_change(conn, "remove", &name, None)?;
        }
    }
    for app in &export.applications {
        record_change(conn, "upsert", &app.name, Some(app))?;
    }
    Ok(())
}

// ---- audit ----------------------------------------------------------------------------------------

pub fn audit(conn: &Db, actor: &str, action: &str, outcome: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO audit (at, actor, action, outcome) VALUES (?1, ?2, ?3, ?4)",
        args![now(), actor, action, outcome],
    )?;
    Ok(())
}

pub fn audit_log(conn: &Db, limit: i64) -> Result<Vec<AuditEntry>> {
    conn.query(
        "SELECT at, actor, action, outcome FROM audit ORDER BY id DESC LIMIT ?1",
        args![limit],
    )?
    .iter()
    .map(|r| {
        Ok(AuditEntry {
            at: r.int(0)?,
            actor: r.text(1)?,
            action: r.text(2)?,
            outcome: r.text(3)?,
        })
    })
    .collect()
}

// ---- the application directory --------------------------------------------------------------

/// Records one change of an application for `/v1/changes` and trims the history. On
/// PostgreSQL the directory lock is held from here to the commit, so replicas append one after
/// another and sequence numbers become visible in order (a reader that saw N never misses a
/// smaller number committed later).
pub fn record_change(conn: &Db, op: &str, name: &str, app: Option<&Application>) -> Result<()> {
    let body = match app {
        Some(app) => Some(serde_json::to_string(&app.config())?),
        None => None,
    };
    conn.lock(Lock::Directory)?;
    conn.execute(
        "INSERT INTO directory_log (op, name, body) VALUES (?1, ?2, ?3)",
        args![op, name, &body],
    )?;
    conn.execute(
        "DELETE FROM directory_log WHERE seq <= (SELECT MAX(seq) FROM directory_log) - ?1",
        args![DIRECTORY_HISTORY],
    )?;
    Ok(())
}

/// Records the application's current state (upsert), by id.
pub fn record_application(conn: &Db, id: i64) -> Result<()> {
    let row = application(conn, id, None)?;
    record_change(
        conn,
        "upsert",
        &row.application.name,
        Some(&row.application),
    )
}

/// The newest change's sequence number (0: none yet).
pub fn directory_seq(conn: &Db) -> Result<i64> {
    conn.query_one("SELECT COALESCE(MAX(seq), 0) FROM directory_log", args![])?
        .int(0)
}

/// The oldest sequence number still kept (None: empty history).
pub fn directory_oldest(conn: &Db) -> Result<Option<i64>> {
    conn.query_one("SELECT MIN(seq) FROM directory_log", args![])?
        .opt_int(0)
}

/// Changes after `since`, in order: (op, name, application JSON).
pub fn directory_changes(conn: &Db, since: i64) -> Result<Vec<(String, String, Option<String>)>> {
    conn.query(
        "SELECT op, name, body FROM directory_log WHERE seq > ?1 ORDER BY seq",
        args![since],
    )?
    .iter()
    .map(|r| Ok((r.text(0)?, r.text(1)?, r.opt_text(2)?)))
    .collect()
}

// ---- sessions ------------------------------------------------------------------------------------

pub fn create_session(
    conn: &Db,
    sub: &str,
    name: &str,
    admin: bool,
    ttl_seconds: i64,
) -> Result<Session> {
    let session = Session {
        id: random_token()?,
        sub: sub.to_string(),
        name: name.to_string(),
        admin,
        csrf: random_token()?,
        expires: now() + ttl_seconds,
    };
    conn.execute("DELETE FROM sessions WHERE expires < ?1", args![now()])?;
    conn.execute(
        "INSERT INTO sessions (id, sub, name, admin, csrf, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        args![
            &session.id,
            &session.sub,
            &session.name,
            session.admin,
            &session.csrf,
            session.expires
        ],
    )?;
    Ok(session)
}

/// A session that has not expired.
pub fn session(conn: &Db, id: &str) -> Result<Option<Session>> {
    conn.query_opt(
        "SELECT id, sub, name, admin, csrf, expires FROM sessions WHERE id = ?1 AND expires > ?2",
        args![id, now()],
    )?
    .map(|r| {
        Ok(Session {
            id: r.text(0)?,
            sub: r.text(1)?,
            name: r.text(2)?,
            admin: r.int(3)? != 0,
            csrf: r.text(4)?,
            expires: r.int(5)?,
        })
    })
    .transpose()
}

pub fn delete_session(conn: &Db, id: &str) -> Result<()> {
    conn.execute("DELETE FROM sessions WHERE id = ?1", args![id])?;
    Ok(())
}
