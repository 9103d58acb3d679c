//! A model-based test of revocation (API.md §3, §8). Seeded random sequences of logins,
//! logouts, closed sessions, password changes and resets, deleted users, role changes,
//! refreshes, replayed refresh tokens and idle expiry run against the server, on stopped
//! clocks that the steps move; after every step, every session ever issued, live or dead, is checked over the
//! bearer header, the session cookie and the gateway webhook against a model of which
//! sessions are live and which roles their users hold, and so is each user's list of
//! sessions. A session cache that forgets a revocation or serves old roles shows up as a
//! disagreement, reported with the seed and the steps that led to it.
//!
//! `GATEHOUSE_MODEL_SEED=<n>` replays one seed; without it, a few random seeds run.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use gatehouse::mail::Mail;
use gatehouse::Config;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::common::{model_seeds, unique, Reply, TestServer, ADMIN_PASSWORD, PASSWORD};
use crate::reset::token_in;

// Server internals are touched only by these functions, so a rename changes them alone.

/// The mails `server` has sent (servers started with an outbox), verification links aside.
fn mails_sent(server: &TestServer) -> Vec<Mail> {
    server.mails_but_verification()
}

/// Moves `server`'s clock; every instance's clock is stopped at the same time when a run starts.
fn advance_clock(server: &TestServer, seconds: i64) {
    server.state.clock.advance(seconds);
}

fn stop_clock(server: &TestServer, at: chrono::DateTime<chrono::Utc>) {
    server.state.clock.freeze_at(at);
}

/// Accounts the steps act on, besides the admin who performs the admin operations.
const USERS: usize = 3;
/// Steps per seed, after the signups that fill the user slots.
const STEPS: usize = 40;
/// Seeds per run when `GATEHOUSE_MODEL_SEED` names none.
const SEEDS: u64 = 3;
/// How long an instance that did not make a change may take to see it (API.md §3).
const PROPAGATION: Duration = Duration::from_millis(100);
/// Global roles the admin grants and revokes.
const GRANTABLE: [&str; 2] = ["editor", "auditor"];
/// What a webhook check asks for in `X-Hasura-Role`: nothing, the role every account holds,
/// the grantable ones, and one that no user in the model ever holds.
const REQUESTABLE: [Option<&str>; 5] = [None, Some("user"), Some("editor"), Some("auditor"), Some("admin")];
/// `SESSION_IDLE_TIMEOUT` of the run. Every check touches every live session on every
/// instance, so sessions idle out only when a step moves the clocks this far at once.
const IDLE: i64 = 900;
/// A spent refresh token presented again after this long closes its session (API.md §8).
const REFRESH_GRACE: i64 = 10;

const SIGNUP: &str = "mutation($u: String!, $p: String!, $e: String) {
    signup(input: {username: $u, password: $p, email: $e}) { token refreshToken user { id } session { id } }
}";
const LOGIN: &str =
    "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { token refreshToken session { id } } }";
const ME: &str = "{ me { id roles } }";
const LOGOUT: &str = "mutation { logout }";
const CLOSE_SESSION: &str = "mutation($id: UUID!) { closeSession(id: $id) }";
const CLOSE_ALL_SESSIONS: &str = "mutation { closeAllSessions }";
const CHANGE_PASSWORD: &str = "mutation($old: String!, $new: String!) {
    changePassword(input: {currentPassword: $old, newPassword: $new}) { token refreshToken session { id } }
}";
const REQUEST_RESET: &str = "mutation($u: String!) { requestPasswordReset(input: {username: $u}) }";
const RESET: &str = "mutation($t: String!, $p: String!) {
    resetPassword(input: {token: $t, newPassword: $p}) { token refreshToken session { id } }
}";
const CLOSE_USER_SESSIONS: &str = "mutation($id: UUID!) { closeUserSessions(userId: $id) }";
const DELETE_USERS: &str = "mutation($id: UUID!) { deleteUsers(ids: [$id]) }";
const GRANT_ROLES: &str = "mutation($id: UUID!, $r: String!) { grantRoles(userId: $id, roles: [$r]) { roles } }";
const REVOKE_ROLES: &str = "mutation($id: UUID!, $r: String!) { revokeRoles(userId: $id, roles: [$r]) { roles } }";
const LISTING: &str = "{ countSessions sessions { id } }";
const CLOSE_OTHER_SESSIONS: &str = "mutation { closeOtherSessions }";
const REFRESH: &str =
    "mutation($r: String!) { refreshSession(refreshToken: $r) { token refreshToken session { id } } }";

#[tokio::test]
async fn revocation_model_sqlite_or_suite_db() {
    for seed in model_seeds(SEEDS) {
        let (server, admin_token) = TestServer::start_with_admin(config()).await;
        run_model(seed, Cluster::new(vec![server], 0, admin_token).await).await;
    }
}

#[tokio::test]
async fn revocation_model_two_instances() {
    if std::env::var("TEST_DATABASE_URL").map_or(true, |url| url.is_empty()) {
        eprintln!("revocation_model_two_instances skipped: it needs TEST_DATABASE_URL (PostgreSQL)");
        return;
    }
    for seed in model_seeds(SEEDS) {
        let (first, admin_token) = TestServer::start_with_admin_on_postgres(config()).await;
        // The second instance alone has an outbox, so every reset mail is requested there.
        let second = first.start_sharing_with_outbox(config()).await;
        run_model(seed, Cluster::new(vec![first, second], 1, admin_token).await).await;
    }
}

/// Test defaults with rate limits far above what a run needs, so no step is refused for
/// being frequent; the GraphQL limits stay at their defaults. Sessions and tokens outlive
/// any run, so idle expiry and replayed refresh tokens are the only endings by time.
fn config() -> Config {
    Config {
        session_ttl: 10_000_000,
        access_token_ttl: 10_000_000,
        session_idle_timeout: IDLE as u64,
        rate_limit_login_user: 100_000,
        rate_limit_login_ip: 100_000,
        rate_limit_signup_ip: 100_000,
        rate_limit_reset_ip: 100_000,
        rate_limit_reset_user: 100_000,
        ..Config::for_test()
    }
}

/// Fills the user slots, then runs `STEPS` random steps, checking everything after each.
async fn run_model(seed: u64, cluster: Cluster) {
    eprintln!("revocation model: seed {seed} (replay with GATEHOUSE_MODEL_SEED={seed})");
    let started = Instant::now();
    let mut run = Run::new(seed, cluster).await;
    for user in 0..USERS {
        let on = run.draw_instance();
        run.step(Step::Signup { user, on }).await;
    }
    for _ in 0..STEPS {
        let step = run.draw_step();
        run.step(step).await;
    }
    eprintln!("revocation model: seed {seed} agreed in {:.1?}", started.elapsed());
}

/// The instances under test, all on one database, and the admin's token.
struct Cluster {
    servers: Vec<TestServer>,
    /// The instance with an outbox, where password resets are requested.
    mail_on: usize,
    /// The admin's token when the run starts.
    admin_token: String,
}

impl Cluster {
    async fn new(servers: Vec<TestServer>, mail_on: usize, admin_token: String) -> Cluster {
        let now = chrono::Utc::now();
        for server in &servers {
            // Until then there is no cache to get revocation wrong.
            server.wait_for_cache().await;
            stop_clock(server, now);
        }
        Cluster {
            servers,
            mail_on,
            admin_token,
        }
    }

    /// Moves every instance's clock, as time passing would.
    fn advance(&self, seconds: i64) {
        for server in &self.servers {
            advance_clock(server, seconds);
        }
    }
}

/// One operation of a run. `user` is a slot, 0..USERS (a deleted user's slot goes to a
/// fresh signup); sessions are numbered in the order they were issued, #0 being the
/// admin's; `on` is the instance the request goes to.
#[derive(Clone, Debug)]
enum Step {
    /// A new account in the slot, signed in by its signup.
    Signup {
        user: usize,
        on: usize,
    },
    Login {
        user: usize,
        on: usize,
    },
    /// A plain request with a live session.
    Use {
        session: usize,
        on: usize,
    },
    Logout {
        session: usize,
        on: usize,
    },
    /// `closeSession` of `target` by `caller`, both sessions of one user (possibly the same).
    CloseSession {
        caller: usize,
        target: usize,
        on: usize,
    },
    CloseAllSessions {
        session: usize,
        on: usize,
    },
    ChangePassword {
        session: usize,
        on: usize,
    },
    /// `requestPasswordReset` on the instance with the outbox, `resetPassword` on `on`.
    ResetPassword {
        user: usize,
        on: usize,
    },
    CloseUserSessions {
        user: usize,
        on: usize,
    },
    /// `deleteUsers`, then a signup into the emptied slot.
    DeleteUser {
        user: usize,
        on: usize,
    },
    GrantRole {
        user: usize,
        role: &'static str,
        on: usize,
    },
    RevokeRole {
        user: usize,
        role: &'static str,
        on: usize,
    },
    /// `refreshSession` with the session's current refresh token.
    Refresh {
        session: usize,
        on: usize,
    },
    /// The clocks move past the grace, then the session's spent refresh token comes back.
    ReplayRefresh {
        session: usize,
        on: usize,
    },
    CloseOtherSessions {
        session: usize,
        on: usize,
    },
    /// The clocks move `IDLE` seconds: every session idles out; the admin signs in again.
    IdleAll {
        on: usize,
    },
}

impl Step {
    /// The instance that makes the change.
    fn on(&self) -> usize {
        match *self {
            Step::Signup { on, .. }
            | Step::Login { on, .. }
            | Step::Use { on, .. }
            | Step::Logout { on, .. }
            | Step::CloseSession { on, .. }
            | Step::CloseAllSessions { on, .. }
            | Step::ChangePassword { on, .. }
            | Step::ResetPassword { on, .. }
            | Step::CloseUserSessions { on, .. }
            | Step::DeleteUser { on, .. }
            | Step::GrantRole { on, .. }
            | Step::RevokeRole { on, .. }
            | Step::Refresh { on, .. }
            | Step::ReplayRefresh { on, .. }
            | Step::CloseOtherSessions { on, .. }
            | Step::IdleAll { on } => on,
        }
    }
}

/// The kinds of step `draw_step` picks from.
#[derive(Clone, Copy)]
enum Kind {
    Login,
    Use,
    Logout,
    CloseSession,
    CloseAllSessions,
    ChangePassword,
    ResetPassword,
    CloseUserSessions,
    DeleteUser,
    GrantRole,
    RevokeRole,
    Refresh,
    ReplayRefresh,
    CloseOtherSessions,
    IdleAll,
}

/// How often each kind is drawn: ending some of a user's sessions and then using another is
/// what a cache gets wrong, so logins, uses and logouts dominate.
const KINDS: [(Kind, u32); 15] = [
    (Kind::Login, 4),
    (Kind::Use, 4),
    (Kind::Logout, 3),
    (Kind::CloseSession, 2),
    (Kind::CloseAllSessions, 2),
    (Kind::ChangePassword, 2),
    (Kind::ResetPassword, 1),
    (Kind::CloseUserSessions, 1),
    (Kind::DeleteUser, 1),
    (Kind::GrantRole, 2),
    (Kind::RevokeRole, 2),
    (Kind::Refresh, 3),
    (Kind::ReplayRefresh, 1),
    (Kind::CloseOtherSessions, 1),
    (Kind::IdleAll, 1),
];

/// An account as the model knows it.
struct Account {
    id: String,
    username: String,
    password: String,
    roles: BTreeSet<String>,
}

/// A session the server issued, and whether the model says it is live.
struct Issued {
    token: String,
    /// The refresh token to use next, and the one it replaced.
    refresh_token: String,
    spent_refresh_token: Option<String>,
    id: String,
    user_id: String,
    /// "admin" or "user <slot>", for failure reports.
    owner: String,
    live: bool,
}

/// What the server should answer: the accounts, their roles, and every session issued.
struct Model {
    /// No step acts on the admin's account; the admin signs in again when sessions idle out.
    admin: Account,
    admin_token: String,
    users: Vec<Account>,
    sessions: Vec<Issued>,
}

/// Who a live session should be taken for.
struct Identity<'a> {
    user_id: &'a str,
    roles: &'a BTreeSet<String>,
}

impl Model {
    fn accounts(&self) -> impl Iterator<Item = &Account> {
        std::iter::once(&self.admin).chain(&self.users)
    }

    /// The numbers of the user's live sessions.
    fn live_sessions(&self, user_id: &str) -> Vec<usize> {
        (0..self.sessions.len())
            .filter(|&n| self.sessions[n].live && self.sessions[n].user_id == user_id)
            .collect()
    }

    /// Ends every session of the user; returns how many were live.
    fn end_sessions_of(&mut self, user_id: &str) -> usize {
        let live = self.live_sessions(user_id);
        for &n in &live {
            self.sessions[n].live = false;
        }
        live.len()
    }

    /// Records the session an AuthPayload (`{ token session { id } }`) returned.
    fn issue(&mut self, owner: String, user_id: &str, payload: &Value) -> Result<(), String> {
        self.sessions.push(Issued {
            token: string_at(payload, "/token")?,
            refresh_token: string_at(payload, "/refreshToken")?,
            spent_refresh_token: None,
            id: string_at(payload, "/session/id")?,
            user_id: user_id.to_owned(),
            owner,
            live: true,
        });
        Ok(())
    }

    /// The slot of the user holding `session`.
    fn slot_of(&self, session: usize) -> usize {
        let user_id = &self.sessions[session].user_id;
        self.users
            .iter()
            .position(|account| &account.id == user_id)
            .expect("steps act on sessions of users in a slot")
    }

    /// Who the server should take `session` for, or `None` when it must refuse it.
    fn expectation(&self, session: usize) -> Option<Identity<'_>> {
        let issued = &self.sessions[session];
        if !issued.live {
            return None;
        }
        let account = self.accounts().find(|account| account.id == issued.user_id)?;
        Some(Identity {
            user_id: &account.id,
            roles: &account.roles,
        })
    }

    /// `#n` for each session id, in the model's numbering.
    fn numbered<'a>(&self, ids: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        ids.into_iter()
            .map(|id| match self.sessions.iter().position(|s| &s.id == id) {
                Some(n) => format!("#{n}"),
                None => format!("unknown {id}"),
            })
            .collect()
    }
}

/// One credential path a session is checked through.
#[derive(Clone, Copy, Debug)]
enum Path {
    Bearer,
    Cookie,
    Webhook,
}

/// A check run after a step, drawn up front so that the order and the roles asked for come
/// from the seed.
enum Check {
    /// A session over one path; `role` is the `X-Hasura-Role` a webhook check asks for.
    Session {
        session: usize,
        path: Path,
        role: Option<&'static str>,
    },
    /// A user's `countSessions` and `sessions`, asked with one of their live sessions.
    Listing { user_id: String, via: usize },
}

/// A run of one seed: the generator, the servers, the model and the steps so far.
struct Run {
    seed: u64,
    rng: StdRng,
    cluster: Cluster,
    model: Model,
    steps: Vec<Step>,
}

impl Run {
    async fn new(seed: u64, cluster: Cluster) -> Run {
        let reply = cluster.servers[0]
            .gql(Some(&cluster.admin_token), "{ me { id username } }", json!({}))
            .await;
        let me = data(&reply, "me").expect("the admin's session works");
        let admin = Account {
            id: string_at(&me, "/id").expect("admin id"),
            username: string_at(&me, "/username").expect("admin username"),
            password: ADMIN_PASSWORD.to_owned(),
            // API.md §1: the configured admin holds exactly these.
            roles: BTreeSet::from(["admin".to_owned(), "user".to_owned()]),
        };
        let admin_session = Issued {
            token: cluster.admin_token.clone(),
            refresh_token: String::new(),
            spent_refresh_token: None,
            id: admin_session_id(&cluster).await,
            user_id: admin.id.clone(),
            owner: "admin".into(),
            live: true,
        };
        let model = Model {
            admin,
            admin_token: cluster.admin_token.clone(),
            users: Vec::new(),
            sessions: vec![admin_session],
        };
        Run {
            seed,
            rng: StdRng::seed_from_u64(seed),
            cluster,
            model,
            steps: Vec::new(),
        }
    }

    fn draw_instance(&mut self) -> usize {
        self.rng.gen_range(0..self.cluster.servers.len())
    }

    /// A random step that makes sense in the model's current state.
    fn draw_step(&mut self) -> Step {
        let on = self.draw_instance();
        let user = self.rng.gen_range(0..USERS);
        let role = *GRANTABLE.choose(&mut self.rng).expect("grantable roles");
        let kind = KINDS
            .choose_weighted(&mut self.rng, |(_, weight)| *weight)
            .expect("weights")
            .0;
        let live = self.model.live_sessions(&self.model.users[user].id);
        let session = live.choose(&mut self.rng).copied();
        let other = live.choose(&mut self.rng).copied();
        match (kind, session, other) {
            (Kind::Use, Some(session), _) => Step::Use { session, on },
            (Kind::Logout, Some(session), _) => Step::Logout { session, on },
            (Kind::CloseSession, Some(caller), Some(target)) => Step::CloseSession { caller, target, on },
            (Kind::CloseAllSessions, Some(session), _) => Step::CloseAllSessions { session, on },
            (Kind::ChangePassword, Some(session), _) => Step::ChangePassword { session, on },
            (Kind::ResetPassword, ..) => Step::ResetPassword { user, on },
            (Kind::CloseUserSessions, ..) => Step::CloseUserSessions { user, on },
            (Kind::DeleteUser, ..) => Step::DeleteUser { user, on },
            (Kind::GrantRole, ..) => Step::GrantRole { user, role, on },
            (Kind::RevokeRole, ..) => Step::RevokeRole { user, role, on },
            (Kind::Refresh, Some(session), _) => Step::Refresh { session, on },
            (Kind::ReplayRefresh, Some(session), _) if self.model.sessions[session].spent_refresh_token.is_some() => {
                Step::ReplayRefresh { session, on }
            }
            (Kind::CloseOtherSessions, Some(session), _) => Step::CloseOtherSessions { session, on },
            (Kind::IdleAll, ..) => Step::IdleAll { on },
            // A login, also in place of the kinds above that need a live session the user lacks.
            _ => Step::Login { user, on },
        }
    }

    /// Runs the step and every check after it; fails with the seed and the steps so far.
    async fn step(&mut self, step: Step) {
        self.steps.push(step.clone());
        let outcome = match self.apply(&step).await {
            Ok(()) => self.check_everything(step.on()).await,
            Err(problem) => Err(format!("the step itself failed: {problem}")),
        };
        if let Err(problem) = outcome {
            panic!("{}", self.report(&problem));
        }
    }

    async fn apply(&mut self, step: &Step) -> Result<(), String> {
        let cluster = &self.cluster;
        let model = &mut self.model;
        let admin = model.admin_token.clone();
        let admin = admin.as_str();
        match *step {
            Step::Signup { user, on } => signup(&cluster.servers[on], model, user).await,
            Step::Login { user, on } => login(&cluster.servers[on], model, user).await,
            Step::Use { session, on } => {
                let reply = cluster.servers[on]
                    .gql(Some(&model.sessions[session].token), ME, json!({}))
                    .await;
                expect_me(&reply, model.expectation(session))
            }
            Step::Logout { session, on } => {
                let reply = cluster.servers[on]
                    .gql(Some(&model.sessions[session].token), LOGOUT, json!({}))
                    .await;
                model.sessions[session].live = false;
                expect_true(&reply, "logout")
            }
            Step::CloseSession { caller, target, on } => {
                let variables = json!({ "id": model.sessions[target].id });
                let token = &model.sessions[caller].token;
                let reply = cluster.servers[on].gql(Some(token), CLOSE_SESSION, variables).await;
                model.sessions[target].live = false;
                expect_true(&reply, "closeSession")
            }
            Step::CloseAllSessions { session, on } => {
                let reply = cluster.servers[on]
                    .gql(Some(&model.sessions[session].token), CLOSE_ALL_SESSIONS, json!({}))
                    .await;
                let user_id = model.sessions[session].user_id.clone();
                let closed = model.end_sessions_of(&user_id);
                expect_value(&reply, "closeAllSessions", json!(closed))
            }
            Step::ChangePassword { session, on } => change_password(&cluster.servers[on], model, session).await,
            Step::ResetPassword { user, on } => {
                reset_password(&cluster.servers[cluster.mail_on], &cluster.servers[on], model, user).await
            }
            Step::CloseUserSessions { user, on } => {
                let variables = json!({ "id": model.users[user].id });
                let reply = cluster.servers[on]
                    .gql(Some(admin), CLOSE_USER_SESSIONS, variables)
                    .await;
                let user_id = model.users[user].id.clone();
                let closed = model.end_sessions_of(&user_id);
                expect_value(&reply, "closeUserSessions", json!(closed))
            }
            Step::DeleteUser { user, on } => delete_user(&cluster.servers[on], admin, model, user).await,
            Step::GrantRole { user, role, on } => {
                model.users[user].roles.insert(role.to_owned());
                let account = &model.users[user];
                change_role(&cluster.servers[on], admin, account, (GRANT_ROLES, "grantRoles"), role).await
            }
            Step::RevokeRole { user, role, on } => {
                model.users[user].roles.remove(role);
                let account = &model.users[user];
                change_role(
                    &cluster.servers[on],
                    admin,
                    account,
                    (REVOKE_ROLES, "revokeRoles"),
                    role,
                )
                .await
            }
            Step::Refresh { session, on } => refresh(&cluster.servers[on], model, session).await,
            Step::ReplayRefresh { session, on } => {
                cluster.advance(REFRESH_GRACE + 1);
                let spent = model.sessions[session].spent_refresh_token.clone().unwrap_or_default();
                let reply = cluster.servers[on].gql(None, REFRESH, json!({ "r": spent })).await;
                model.sessions[session].live = false;
                expect_code(&reply, "UNAUTHENTICATED")
            }
            Step::CloseOtherSessions { session, on } => {
                let reply = cluster.servers[on]
                    .gql(Some(&model.sessions[session].token), CLOSE_OTHER_SESSIONS, json!({}))
                    .await;
                let user_id = model.sessions[session].user_id.clone();
                let closed = model.end_sessions_of(&user_id);
                model.sessions[session].live = true;
                expect_value(&reply, "closeOtherSessions", json!(closed - 1))
            }
            Step::IdleAll { on } => {
                cluster.advance(IDLE);
                for issued in &mut model.sessions {
                    issued.live = false;
                }
                admin_login(&cluster.servers[on], model).await
            }
        }
    }

    /// Every session ever issued over every path, and every user's session list, on every
    /// instance. The instance that made the change must agree at once; the others may take
    /// up to `PROPAGATION`.
    async fn check_everything(&mut self, changed_on: usize) -> Result<(), String> {
        for (on, check) in self.draw_checks() {
            let patience = if on == changed_on { Duration::ZERO } else { PROPAGATION };
            self.check_within(on, &check, patience).await?;
        }
        Ok(())
    }

    /// The checks to run, in a random order: the order decides which session fills a cache
    /// first, and so which stale entry a later check stumbles on.
    fn draw_checks(&mut self) -> Vec<(usize, Check)> {
        let mut checks = Vec::new();
        for on in 0..self.cluster.servers.len() {
            for session in 0..self.model.sessions.len() {
                for path in [Path::Bearer, Path::Cookie, Path::Webhook] {
                    // A dead session asks for no role: wrongly admitted, it gets a 200 rather
                    // than a refusal for lacking the role.
                    let role = if self.model.sessions[session].live {
                        *REQUESTABLE.choose(&mut self.rng).expect("roles")
                    } else {
                        None
                    };
                    checks.push((on, Check::Session { session, path, role }));
                }
            }
            let ids: Vec<String> = self.model.accounts().map(|account| account.id.clone()).collect();
            for user_id in ids {
                if let Some(&via) = self.model.live_sessions(&user_id).choose(&mut self.rng) {
                    checks.push((on, Check::Listing { user_id, via }));
                }
            }
        }
        checks.shuffle(&mut self.rng);
        checks
    }

    /// Runs `check` on instance `on` until it passes or `patience` has run out.
    async fn check_within(&self, on: usize, check: &Check, patience: Duration) -> Result<(), String> {
        let started = Instant::now();
        loop {
            match self.check_once(&self.cluster.servers[on], check).await {
                Ok(()) => return Ok(()),
                Err(_) if started.elapsed() < patience => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(problem) => return Err(format!("on instance {on}, {problem}")),
            }
        }
    }

    async fn check_once(&self, server: &TestServer, check: &Check) -> Result<(), String> {
        match check {
            Check::Session { session, path, role } => {
                let issued = &self.model.sessions[*session];
                let expected = self.model.expectation(*session);
                let outcome = match path {
                    Path::Bearer => expect_me(&server.gql(Some(&issued.token), ME, json!({})).await, expected),
                    Path::Cookie => expect_me(&server.gql_with_cookie(&issued.token, ME, json!({})).await, expected),
                    Path::Webhook => {
                        expect_admission(&ask_webhook(server, &issued.token, *role).await, expected, *role)
                    }
                };
                let state = if issued.live { "live" } else { "dead" };
                outcome.map_err(|problem| {
                    format!(
                        "session #{session} ({state}, {}) over {path:?}: {problem}",
                        issued.owner
                    )
                })
            }
            Check::Listing { user_id, via } => {
                let reply = server
                    .gql(Some(&self.model.sessions[*via].token), LISTING, json!({}))
                    .await;
                let expected: BTreeSet<String> = self
                    .model
                    .live_sessions(user_id)
                    .into_iter()
                    .map(|n| self.model.sessions[n].id.clone())
                    .collect();
                let count = data(&reply, "countSessions")?;
                let listed: BTreeSet<String> = data(&reply, "sessions")?
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s["id"].as_str().map(str::to_owned))
                    .collect();
                if count == json!(expected.len()) && listed == expected {
                    return Ok(());
                }
                Err(format!(
                    "the sessions of {} (asked with #{via}): expected {:?}, got countSessions {count} and sessions {:?}",
                    self.model.sessions[*via].owner,
                    self.model.numbered(&expected),
                    self.model.numbered(&listed),
                ))
            }
        }
    }

    /// The failure message: the problem, the seed to replay and every step so far.
    fn report(&self, problem: &str) -> String {
        let steps: Vec<String> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, step)| format!("  {i:>3}: {step:?}"))
            .collect();
        let sessions: Vec<String> = self
            .model
            .sessions
            .iter()
            .enumerate()
            .map(|(n, s)| format!("#{n} {} {}", s.owner, if s.live { "live" } else { "dead" }))
            .collect();
        format!(
            "revocation model: after step {}, {problem}\n\
             seed {seed}: replay with GATEHOUSE_MODEL_SEED={seed}\n\
             steps (users are slots 0..{USERS}, sessions are numbered in the order issued):\n{}\n\
             sessions as the model has them: {}",
            self.steps.len() - 1,
            steps.join("\n"),
            sessions.join(", "),
            seed = self.seed,
        )
    }
}

/// The id of the admin's one session, the only one open when a run starts.
async fn admin_session_id(cluster: &Cluster) -> String {
    let reply = cluster.servers[0]
        .gql(Some(&cluster.admin_token), LISTING, json!({}))
        .await;
    string_at(&data(&reply, "sessions").expect("the admin's sessions"), "/0/id").expect("the admin's session")
}

/// Signs a fresh account up into the slot, replacing whoever held it.
async fn signup(server: &TestServer, model: &mut Model, user: usize) -> Result<(), String> {
    let username = unique("model");
    let variables = json!({ "u": username, "p": PASSWORD, "e": email_of(&username) });
    let payload = data(&server.gql(None, SIGNUP, variables).await, "signup")?;
    let account = Account {
        id: string_at(&payload, "/user/id")?,
        username,
        password: PASSWORD.to_owned(),
        roles: BTreeSet::from(["user".to_owned()]),
    };
    let id = account.id.clone();
    if user < model.users.len() {
        model.users[user] = account;
    } else {
        model.users.push(account);
    }
    model.issue(format!("user {user}"), &id, &payload)
}

async fn login(server: &TestServer, model: &mut Model, user: usize) -> Result<(), String> {
    let account = &model.users[user];
    let variables = json!({ "u": account.username, "p": account.password });
    let payload = data(&server.gql(None, LOGIN, variables).await, "login")?;
    let id = account.id.clone();
    model.issue(format!("user {user}"), &id, &payload)
}

/// Changes the password with `session`: every session of the user ends, the returned one is live.
async fn change_password(server: &TestServer, model: &mut Model, session: usize) -> Result<(), String> {
    let user = model.slot_of(session);
    let new_password = unique("new password");
    let variables = json!({ "old": model.users[user].password, "new": new_password });
    let reply = server
        .gql(Some(&model.sessions[session].token), CHANGE_PASSWORD, variables)
        .await;
    let payload = data(&reply, "changePassword")?;
    replace_sessions(model, user, new_password, &payload)
}

/// Resets the password by mail: requested where the outbox is, completed on `server`.
async fn reset_password(
    mail_server: &TestServer,
    server: &TestServer,
    model: &mut Model,
    user: usize,
) -> Result<(), String> {
    let account = &model.users[user];
    let email = email_of(&account.username);
    let earlier = mails_to(mail_server, &email).len();
    let requested = mail_server
        .gql(None, REQUEST_RESET, json!({ "u": account.username }))
        .await;
    expect_true(&requested, "requestPasswordReset")?;
    let token = next_mail_to(mail_server, &email, earlier)
        .await
        .map(|mail| token_in(&mail))?;
    let new_password = unique("reset password");
    let reply = server.gql(None, RESET, json!({ "t": token, "p": new_password })).await;
    let payload = data(&reply, "resetPassword")?;
    replace_sessions(model, user, new_password, &payload)
}

/// After a password change or reset: all the user's sessions end, the returned one is live.
fn replace_sessions(model: &mut Model, user: usize, new_password: String, payload: &Value) -> Result<(), String> {
    let id = model.users[user].id.clone();
    model.end_sessions_of(&id);
    model.users[user].password = new_password;
    model.issue(format!("user {user}"), &id, payload)
}

/// Renews the session: its next requests use the new token and refresh token.
async fn refresh(server: &TestServer, model: &mut Model, session: usize) -> Result<(), String> {
    let issued = &mut model.sessions[session];
    let reply = server.gql(None, REFRESH, json!({ "r": issued.refresh_token })).await;
    let payload = data(&reply, "refreshSession")?;
    if string_at(&payload, "/session/id")? != issued.id {
        return Err(format!("refreshSession renewed another session: {payload}"));
    }
    let next = string_at(&payload, "/refreshToken")?;
    issued.spent_refresh_token = Some(std::mem::replace(&mut issued.refresh_token, next));
    issued.token = string_at(&payload, "/token")?;
    Ok(())
}

/// The admin signs in again (after every session idled out).
async fn admin_login(server: &TestServer, model: &mut Model) -> Result<(), String> {
    let variables = json!({ "u": model.admin.username, "p": model.admin.password });
    let payload = data(&server.gql(None, LOGIN, variables).await, "login")?;
    model.admin_token = string_at(&payload, "/token")?;
    let id = model.admin.id.clone();
    model.issue("admin".into(), &id, &payload)
}

/// Deletes the user (their sessions all end) and signs a fresh one up in the slot.
async fn delete_user(server: &TestServer, admin: &str, model: &mut Model, user: usize) -> Result<(), String> {
    let id = model.users[user].id.clone();
    let reply = server.gql(Some(admin), DELETE_USERS, json!({ "id": id })).await;
    model.end_sessions_of(&id);
    expect_value(&reply, "deleteUsers", json!([id]))?;
    signup(server, model, user).await
}

/// Grants or revokes `role` with `(mutation, its field)`; the model already holds the outcome,
/// and the roles the mutation answers with must match it.
async fn change_role(
    server: &TestServer,
    admin: &str,
    account: &Account,
    (mutation, field): (&str, &str),
    role: &str,
) -> Result<(), String> {
    let reply = server
        .gql(Some(admin), mutation, json!({ "id": account.id, "r": role }))
        .await;
    expect_value(&reply, field, json!({ "roles": account.roles }))
}

fn email_of(username: &str) -> String {
    format!("{username}@example.com")
}

fn mails_to(server: &TestServer, email: &str) -> Vec<Mail> {
    mails_sent(server).into_iter().filter(|mail| mail.to == email).collect()
}

/// The mail to `email` after the `earlier` ones, once the background sender has sent it.
async fn next_mail_to(server: &TestServer, email: &str, earlier: usize) -> Result<Mail, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(mail) = mails_to(server, email).into_iter().nth(earlier) {
            return Ok(mail);
        }
        if Instant::now() > deadline {
            return Err(format!("no reset mail reached {email}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Asks the gateway check about a request with `token`, asking for `role` when given.
async fn ask_webhook(server: &TestServer, token: &str, role: Option<&str>) -> Reply {
    let mut request = server.http.get(server.url("/auth/webhook")).bearer_auth(token);
    if let Some(role) = role {
        request = request.header("X-Hasura-Role", role);
    }
    Reply::from(request.send().await.expect("webhook request")).await
}

/// `{ me { id roles } }` answered for the expected user, or refused when none is expected.
fn expect_me(reply: &Reply, expected: Option<Identity<'_>>) -> Result<(), String> {
    let Some(who) = expected else {
        return expect_unauthenticated(reply);
    };
    let me = data(reply, "me")?;
    let want = json!({ "id": who.user_id, "roles": who.roles });
    if me == want {
        return Ok(());
    }
    Err(format!("expected me = {want}, got {me}"))
}

/// The webhook admits a live session as its user, in the role asked for when the user holds
/// it (else `user`), and refuses a dead session or a role the user lacks.
fn expect_admission(reply: &Reply, expected: Option<Identity<'_>>, role: Option<&str>) -> Result<(), String> {
    let admitted_as = match (expected, role) {
        (Some(who), None) => Some((who.user_id, "user")),
        (Some(who), Some(role)) if who.roles.contains(role) => Some((who.user_id, role)),
        _ => None,
    };
    let Some((user_id, role)) = admitted_as else {
        return match reply.status {
            401 => Ok(()),
            status => Err(format!("expected a 401 refusal, got HTTP {status}: {}", reply.body)),
        };
    };
    let want = json!({ "X-Hasura-User-Id": user_id, "X-Hasura-Role": role });
    let headers = (reply.header("x-hasura-user-id"), reply.header("x-hasura-role"));
    if reply.status == 200 && reply.body == want && headers == (Some(user_id.to_owned()), Some(role.to_owned())) {
        return Ok(());
    }
    Err(format!(
        "expected 200 {want}, got HTTP {} {} with headers {headers:?}",
        reply.status, reply.body
    ))
}

/// A refusal before execution: HTTP 401 with code UNAUTHENTICATED (API.md §3).
fn expect_unauthenticated(reply: &Reply) -> Result<(), String> {
    let code = &reply.body["errors"][0]["extensions"]["code"];
    if reply.status == 401 && code == "UNAUTHENTICATED" {
        return Ok(());
    }
    Err(format!(
        "expected 401 UNAUTHENTICATED, got HTTP {}: {}",
        reply.status, reply.body
    ))
}

/// A field error with `code`.
fn expect_code(reply: &Reply, code: &str) -> Result<(), String> {
    if reply.body["errors"][0]["extensions"]["code"] == code {
        return Ok(());
    }
    Err(format!("expected {code}, got HTTP {}: {}", reply.status, reply.body))
}

/// `data.<field>` of a reply that must have succeeded.
fn data(reply: &Reply, field: &str) -> Result<Value, String> {
    if reply.status != 200 || reply.body.get("errors").is_some() {
        return Err(format!("{field} failed with HTTP {}: {}", reply.status, reply.body));
    }
    Ok(reply.body["data"][field].clone())
}

fn expect_value(reply: &Reply, field: &str, want: Value) -> Result<(), String> {
    let got = data(reply, field)?;
    if got == want {
        return Ok(());
    }
    Err(format!("{field}: expected {want}, got {got}"))
}

fn expect_true(reply: &Reply, field: &str) -> Result<(), String> {
    expect_value(reply, field, json!(true))
}

fn string_at(value: &Value, pointer: &str) -> Result<String, String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("no string at {pointer} in {value}"))
}
