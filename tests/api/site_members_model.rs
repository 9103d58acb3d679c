//! A model-based test of the member lists a page of sites shows (API.md §5), which the session
//! store keeps across requests. Seeded random sequences of site creations, joins, role
//! changes, removals, departures, deleted sites, renamed and deleted users run against the
//! server; after every step, on every instance, the admin's page of sites, each `site(id)`
//! and each user's own page are checked against a model of who is on which site, as what and
//! under which name. A member list or user row kept past a change shows up as a disagreement,
//! reported with the seed and the steps that led to it.
//!
//! `GATEHOUSE_MODEL_SEED=<n>` replays one seed; without it, a few random seeds run.

use std::time::{Duration, Instant};

use gatehouse::Config;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::common::{model_seeds, str_at, unique, TestServer};

/// Accounts the steps act on, besides the admin, who deletes users and reads every site.
const USERS: usize = 4;
/// At most this many sites at once: few sites, many changes to each.
const SITES: usize = 3;
const STEPS: usize = 40;
const SEEDS: u64 = 3;
/// How long an instance that did not make a change may take to see it (API.md §3).
const PROPAGATION: Duration = Duration::from_millis(100);
const ROLES: [&str; 3] = ["ADMIN", "MANAGER", "USER"];

const PAGE: &str = "{ sites(first: 100) { totalCount edges { node { id members { role user { id name } } } } } }";
const SITE: &str = "query($id: UUID!) { site(id: $id) { id members { role user { id name } } } }";
const OWN_PAGE: &str = "{ sites(first: 100) { totalCount edges { node { id } } } }";
const CREATE: &str = "mutation($n: String!) { createSite(input: {name: $n}) { id code } }";
const JOIN: &str = "mutation($c: String!) { joinSite(code: $c) { id } }";
const SET_ROLE: &str = "mutation($s: UUID!, $u: UUID!, $r: SiteRole) { setSiteRole(siteId: $s, userId: $u, role: $r) }";
const LEAVE: &str = "mutation($s: UUID!) { leaveSite(id: $s) }";
const DELETE_SITE: &str = "mutation($s: UUID!) { deleteSite(id: $s) }";
const RENAME: &str = "mutation($n: String!) { updateProfile(input: {name: $n}) { name } }";
const DELETE_USERS: &str = "mutation($id: UUID!) { deleteUsers(ids: [$id]) }";

#[tokio::test]
async fn site_members_model_sqlite_or_suite_db() {
    for seed in model_seeds(SEEDS) {
        let (server, admin) = TestServer::start_with_admin(config()).await;
        run_model(seed, vec![server], admin).await;
    }
}

#[tokio::test]
async fn site_members_model_two_instances() {
    if std::env::var("TEST_DATABASE_URL").map_or(true, |url| url.is_empty()) {
        eprintln!("site_members_model_two_instances skipped: it needs TEST_DATABASE_URL (PostgreSQL)");
        return;
    }
    for seed in model_seeds(SEEDS) {
        let (first, admin) = TestServer::start_with_admin_on_postgres(config()).await;
        let second = first.start_sharing(config()).await;
        run_model(seed, vec![first, second], admin).await;
    }
}

/// Test defaults with room for every signup a run makes.
fn config() -> Config {
    Config {
        rate_limit_signup_ip: 100_000,
        ..Config::for_test()
    }
}

/// An account as the model knows it.
struct Account {
    id: String,
    token: String,
    name: Option<String>,
}

struct Site {
    id: String,
    code: String,
    /// Slots of the members and their roles, in the order they joined.
    members: Vec<(usize, &'static str)>,
}

impl Site {
    fn role_of(&self, user: usize) -> Option<&'static str> {
        self.members
            .iter()
            .find(|(member, _)| *member == user)
            .map(|(_, role)| *role)
    }

    fn admins(&self) -> Vec<usize> {
        self.members
            .iter()
            .filter(|(_, role)| *role == "ADMIN")
            .map(|(user, _)| *user)
            .collect()
    }

    /// Whether `user` is the site's only admin, whom the site cannot lose.
    fn is_last_admin(&self, user: usize) -> bool {
        self.admins() == [user]
    }
}

#[derive(Clone, Debug)]
enum Step {
    Create {
        user: usize,
    },
    Join {
        user: usize,
        site: usize,
    },
    /// `setSiteRole` by one of the site's admins; `None` removes the user.
    SetRole {
        site: usize,
        user: usize,
        role: Option<&'static str>,
    },
    Leave {
        user: usize,
        site: usize,
    },
    DeleteSite {
        site: usize,
    },
    Rename {
        user: usize,
    },
    /// `deleteUsers` by the admin, then a signup into the emptied slot.
    DeleteUser {
        user: usize,
    },
}

struct Run {
    servers: Vec<TestServer>,
    admin: String,
    users: Vec<Account>,
    /// In creation order, as pages list them.
    sites: Vec<Site>,
    rng: StdRng,
    steps: Vec<String>,
}

async fn run_model(seed: u64, servers: Vec<TestServer>, admin: String) {
    eprintln!("site members model: seed {seed} (replay with GATEHOUSE_MODEL_SEED={seed})");
    for server in &servers {
        server.wait_for_cache().await;
    }
    let mut run = Run {
        servers,
        admin,
        users: Vec::new(),
        sites: Vec::new(),
        rng: StdRng::seed_from_u64(seed),
        steps: Vec::new(),
    };
    for _ in 0..USERS {
        let account = run.signup(0).await;
        run.users.push(account);
    }
    for _ in 0..STEPS {
        let step = run.draw();
        let on = run.rng.gen_range(0..run.servers.len());
        run.steps.push(format!("{step:?} on {on}"));
        let outcome = run.apply(&step, on).await;
        let checked = match outcome {
            Ok(()) => run.check_everywhere(on).await,
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            panic!("seed {seed}: {e}\nsteps:\n  {}", run.steps.join("\n  "));
        }
    }
}

impl Run {
    async fn signup(&self, on: usize) -> Account {
        let (token, id, _) = self.servers[on].signup("member").await;
        Account { id, token, name: None }
    }

    fn draw(&mut self) -> Step {
        let user = self.rng.gen_range(0..USERS);
        if self.sites.is_empty() {
            return Step::Create { user };
        }
        let site = self.rng.gen_range(0..self.sites.len());
        let role = ROLES.choose(&mut self.rng).copied();
        match self.rng.gen_range(0..12) {
            0 if self.sites.len() < SITES => Step::Create { user },
            0..=2 => Step::Join { user, site },
            3..=5 => Step::SetRole { site, user, role },
            6 => Step::SetRole { site, user, role: None },
            7 | 8 => match self.sites[site].members.choose(&mut self.rng) {
                Some(&(member, _)) => Step::Leave { user: member, site },
                None => Step::Join { user, site },
            },
            9 => Step::DeleteSite { site },
            10 => Step::Rename { user },
            _ => Step::DeleteUser { user },
        }
    }

    /// Runs the step on instance `on` and updates the model with what it should have done.
    async fn apply(&mut self, step: &Step, on: usize) -> Result<(), String> {
        let server = &self.servers[on];
        match *step {
            Step::Create { user } => {
                let reply = server
                    .gql(Some(&self.users[user].token), CREATE, json!({ "n": unique("site") }))
                    .await;
                let created = reply.data("createSite");
                self.sites.push(Site {
                    id: str_at(&created, "/id"),
                    code: str_at(&created, "/code"),
                    members: vec![(user, "ADMIN")],
                });
            }
            Step::Join { user, site } => {
                let code = &self.sites[site].code;
                server
                    .gql(Some(&self.users[user].token), JOIN, json!({ "c": code }))
                    .await
                    .data("joinSite");
                if self.sites[site].role_of(user).is_none() {
                    self.sites[site].members.push((user, "USER"));
                }
            }
            Step::SetRole { site, user, role } => {
                let model = &self.sites[site];
                let actor = model.admins()[0];
                let variables = json!({ "s": model.id, "u": self.users[user].id, "r": role });
                let reply = server.gql(Some(&self.users[actor].token), SET_ROLE, variables).await;
                let refused = match (role, model.role_of(user)) {
                    (Some(role), _) if role != "ADMIN" && model.is_last_admin(user) => Some("BAD_USER_INPUT"),
                    (None, _) if model.is_last_admin(user) => Some("BAD_USER_INPUT"),
                    (None, None) => Some("NOT_FOUND"),
                    _ => None,
                };
                if let Some(code) = refused {
                    return expect_refusal(&reply.body, code);
                }
                reply.data("setSiteRole");
                let members = &mut self.sites[site].members;
                match (role, members.iter().position(|(member, _)| *member == user)) {
                    (Some(role), Some(at)) => members[at].1 = role,
                    (Some(role), None) => members.push((user, role)),
                    (None, at) => {
                        members.remove(at.expect("a member"));
                    }
                }
            }
            Step::Leave { user, site } => {
                let model = &self.sites[site];
                let reply = server
                    .gql(Some(&self.users[user].token), LEAVE, json!({ "s": model.id }))
                    .await;
                if model.is_last_admin(user) {
                    return expect_refusal(&reply.body, "BAD_USER_INPUT");
                }
                reply.data("leaveSite");
                self.sites[site].members.retain(|(member, _)| *member != user);
            }
            Step::DeleteSite { site } => {
                let model = &self.sites[site];
                let actor = model.admins()[0];
                let reply = server
                    .gql(Some(&self.users[actor].token), DELETE_SITE, json!({ "s": model.id }))
                    .await;
                reply.data("deleteSite");
                self.sites.remove(site);
            }
            Step::Rename { user } => {
                let name = unique("name");
                let reply = server
                    .gql(Some(&self.users[user].token), RENAME, json!({ "n": name }))
                    .await;
                reply.data("updateProfile");
                self.users[user].name = Some(name);
            }
            Step::DeleteUser { user } => {
                let variables = json!({ "id": self.users[user].id });
                let reply = server.gql(Some(&self.admin), DELETE_USERS, variables).await;
                if self.sites.iter().any(|site| site.is_last_admin(user)) {
                    return expect_refusal(&reply.body, "BAD_USER_INPUT");
                }
                reply.data("deleteUsers");
                for site in &mut self.sites {
                    site.members.retain(|(member, _)| *member != user);
                }
                self.users[user] = self.signup(on).await;
            }
        }
        Ok(())
    }

    /// Every check on every instance: the one that made the change must agree at once, the
    /// others within `PROPAGATION`.
    async fn check_everywhere(&self, changed_on: usize) -> Result<(), String> {
        for on in 0..self.servers.len() {
            let patience = if on == changed_on { Duration::ZERO } else { PROPAGATION };
            let deadline = Instant::now() + patience;
            loop {
                match self.check(on).await {
                    Ok(()) => break,
                    Err(e) if Instant::now() >= deadline => return Err(format!("instance {on}: {e}")),
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        }
        Ok(())
    }

    /// A site's members as the API should show them.
    fn members_of(&self, site: &Site) -> Value {
        let member = |&(user, role): &(usize, &str)| {
            let account = &self.users[user];
            json!({ "role": role, "user": { "id": account.id, "name": account.name } })
        };
        Value::Array(site.members.iter().map(member).collect())
    }

    async fn check(&self, on: usize) -> Result<(), String> {
        let server = &self.servers[on];
        // The admin sees every site and its members: the page reads them up front, `site(id)`
        // through a DataLoader.
        let page = answer(server.gql(Some(&self.admin), PAGE, json!({})).await.body, "sites")?;
        let expected: Vec<Value> = self
            .sites
            .iter()
            .map(|site| json!({ "node": { "id": site.id, "members": self.members_of(site) } }))
            .collect();
        let expected = json!({ "totalCount": self.sites.len(), "edges": expected });
        if page != expected {
            return Err(format!("the admin's page:\n  got      {page}\n  expected {expected}"));
        }
        for site in &self.sites {
            let got = answer(
                server.gql(Some(&self.admin), SITE, json!({ "id": site.id })).await.body,
                "site",
            )?;
            let expected = json!({ "id": site.id, "members": self.members_of(site) });
            if got != expected {
                return Err(format!("site(id):\n  got      {got}\n  expected {expected}"));
            }
        }
        for (slot, account) in self.users.iter().enumerate() {
            let got = answer(
                server.gql(Some(&account.token), OWN_PAGE, json!({})).await.body,
                "sites",
            )?;
            let own: Vec<Value> = self
                .sites
                .iter()
                .filter(|site| site.role_of(slot).is_some())
                .map(|site| json!({ "node": { "id": site.id } }))
                .collect();
            let expected = json!({ "totalCount": own.len(), "edges": own });
            if got != expected {
                return Err(format!("user {slot}'s page:\n  got      {got}\n  expected {expected}"));
            }
        }
        Ok(())
    }
}

/// The field `field` of an answer without errors.
fn answer(body: Value, field: &str) -> Result<Value, String> {
    match body.get("errors") {
        Some(errors) => Err(format!("errors: {errors}")),
        None => Ok(body["data"][field].clone()),
    }
}

fn expect_refusal(body: &Value, code: &str) -> Result<(), String> {
    match body["errors"][0]["extensions"]["code"].as_str() {
        Some(got) if got == code => Ok(()),
        _ => Err(format!("expected {code}, got {body}")),
    }
}
