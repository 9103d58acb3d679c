//! Sessions as credentials: opening one (row + signed token) and checking that a verified
//! token names a live session. Listing and closing sessions is `domain::session`'s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use entity::{session, site_member, user_role};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::auth::cache::CachedSession;
use crate::auth::token::{self, Claims};
use crate::client::ClientInfo;
use crate::error::AppError;
use crate::state::AppState;

/// The signed-in caller of a request, with roles read live from the database.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub roles: Vec<String>,
}

impl Caller {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// A session just opened, with the only copy of its token.
pub struct IssuedSession {
    pub token: String,
    pub session: session::Model,
}

/// Inserts a session for `user_id` and signs its token. Runs on the caller's connection so
/// it can share a transaction with the change that opens it.
pub async fn open(
    conn: &impl ConnectionTrait,
    state: &AppState,
    user_id: Uuid,
    client: &ClientInfo,
) -> Result<IssuedSession, AppError> {
    let now = state.clock.now();
    let expires_at = now + Duration::seconds(state.config.session_ttl as i64);
    let (secret, secret_hash) = token::new_session_secret();
    let row = session::ActiveModel {
        id: Set(Uuid::new_v4()),
        user_id: Set(user_id),
        secret_hash: Set(secret_hash),
        created_at: Set(now),
        expires_at: Set(expires_at),
        last_seen_at: Set(Some(now)),
        user_agent: Set(client.user_agent.clone()),
        ip: Set(client.ip.map(|ip| ip.to_string())),
    };
    let session = session::Entity::insert(row).exec_with_returning(conn).await?;
    let roles = roles_of(conn, user_id).await?;
    let claims = Claims::new(
        user_id,
        session.id,
        secret,
        now.timestamp(),
        expires_at.timestamp(),
        &roles,
    );
    let token = state.tokens.sign(&claims)?;
    Ok(IssuedSession { token, session })
}

/// Turns a verified token into the caller: the session must exist, be unexpired and match
/// the token's secret; the user's roles are read now (or from the session cache, which every
/// change to them invalidates), not taken from the token.
#[tracing::instrument(skip_all)]
pub async fn authenticate(state: &AppState, claims: &Claims) -> Result<Caller, AppError> {
    let now = state.clock.now();
    let (session, roles) = match state.sessions.get(claims.sid) {
        Some((session, roles)) => (session, roles.to_vec()),
        None => {
            let generation = state.sessions.generation();
            let row = session::Entity::find_by_id(claims.sid)
                .one(&state.db)
                .await?
                .ok_or(AppError::InvalidToken)?;
            let roles = roles_of(&state.db, row.user_id).await?;
            let session = CachedSession {
                user_id: row.user_id,
                secret_hash: row.secret_hash,
                expires_at: row.expires_at,
            };
            state
                .sessions
                .insert(claims.sid, session.clone(), roles.clone(), generation);
            (session, roles)
        }
    };
    let live = session.user_id == claims.sub && session.expires_at > now;
    if !live || !token::secret_matches(&claims.sk, &session.secret_hash) {
        return Err(AppError::InvalidToken);
    }
    state.last_seen.touch(claims.sid, now);
    Ok(Caller {
        user_id: session.user_id,
        session_id: claims.sid,
        roles,
    })
}

/// Every role of a user, sorted: global roles, then site roles as `<siteId>:<role>`.
pub async fn roles_of(conn: &impl ConnectionTrait, user_id: Uuid) -> Result<Vec<String>, AppError> {
    let mut roles: Vec<String> = user_role::Entity::find()
        .select_only()
        .column(user_role::Column::Role)
        .filter(user_role::Column::UserId.eq(user_id))
        .order_by_asc(user_role::Column::Role)
        .into_tuple()
        .all(conn)
        .await?;
    let memberships: Vec<(Uuid, String)> = site_member::Entity::find()
        .select_only()
        .column(site_member::Column::SiteId)
        .column(site_member::Column::Role)
        .filter(site_member::Column::UserId.eq(user_id))
        .into_tuple()
        .all(conn)
        .await?;
    let mut site_roles: Vec<String> = memberships
        .into_iter()
        .map(|(site, role)| format!("{site}:{role}"))
        .collect();
    site_roles.sort();
    roles.extend(site_roles);
    Ok(roles)
}

/// Last-seen times noted on the read path and written in batches, so checking a token
/// never writes to the database.
#[derive(Clone, Default)]
pub struct LastSeen {
    pending: Arc<Mutex<HashMap<Uuid, DateTime<Utc>>>>,
}

impl LastSeen {
    pub fn touch(&self, session_id: Uuid, at: DateTime<Utc>) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(session_id, at);
        }
    }

    /// A time noted but not yet written, newer than what the database holds.
    pub fn pending(&self, session_id: Uuid) -> Option<DateTime<Utc>> {
        self.pending.lock().ok()?.get(&session_id).copied()
    }

    /// Writes the noted times; sessions closed meanwhile are simply not found.
    pub async fn flush(&self, conn: &impl ConnectionTrait) -> Result<(), AppError> {
        let batch: Vec<_> = match self.pending.lock() {
            Ok(mut pending) => pending.drain().collect(),
            Err(_) => return Ok(()),
        };
        for (session_id, at) in batch {
            session::Entity::update_many()
                .col_expr(session::Column::LastSeenAt, Expr::value(at))
                .filter(session::Column::Id.eq(session_id))
                .exec(conn)
                .await?;
        }
        Ok(())
    }
}
