//! Password hashing (argon2id on threads of its own, one per core, at most one hash per core
//! at a time) and the password rules of API.md §7. Accounts and their storage are
//! `domain::account`'s.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use argon2::password_hash::{Output, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use crossbeam_channel::RecvTimeoutError;
use tokio::sync::Semaphore;
use zeroize::Zeroize as _;

use crate::error::AppError;

/// The entries of at least 8 characters of zxcvbn's 30,000 most common passwords (MIT
/// licence); shorter ones are refused by the length rule anyway.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("common_passwords.txt").lines().collect());

const MIN_PASSWORD_CHARS: usize = 8;
const MAX_PASSWORD_CHARS: usize = 256;

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    /// Bounds concurrent hashes to the core count, so a login burst queues here instead of
    /// taking every core from requests that only check a token.
    permits: Arc<Semaphore>,
    threads: HashingThreads,
    /// A hash of a random password, verified against when the username is unknown so that
    /// both failures cost the same.
    dummy_hash: Arc<str>,
    /// Hashes waiting for a permit (the queue depth metric).
    waiting: Arc<AtomicI64>,
    /// Hashes and verifications run so far: shows that a rate-limited attempt costs none.
    runs: Arc<AtomicU64>,
    /// Hashes running now, and the most ever running at once: shows the bound holds.
    running: Arc<AtomicUsize>,
    peak_running: Arc<AtomicUsize>,
}

impl PasswordHasher {
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let random_password: [u8; 16] = rand::random();
        let dummy_hash = hash_blocking(&params, &random_password, &mut Memory::default())?;
        Ok(PasswordHasher {
            permits: Arc::new(Semaphore::new(cores)),
            threads: HashingThreads::start(cores, params.block_count())
                .map_err(|e| anyhow::anyhow!("starting the password hashing threads: {e}"))?,
            params,
            dummy_hash: dummy_hash.into(),
            waiting: Arc::default(),
            runs: Arc::default(),
            running: Arc::default(),
            peak_running: Arc::default(),
        })
    }

    /// Hashes a new password as a PHC string (`$argon2id$v=19$m=...`).
    pub async fn hash(&self, password: &str) -> Result<String, AppError> {
        let password = password.to_owned();
        let params = self.params.clone();
        self.run(move |memory| hash_blocking(&params, password.as_bytes(), memory))
            .await
    }

    /// Checks `password` against `stored`, or against a dummy hash when there is no account,
    /// doing the same work either way.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, AppError> {
        let password = password.to_owned();
        // An empty hash (an account made by social login) has no password: it costs the
        // same as an unknown name and never matches.
        let stored = stored.filter(|s| !s.is_empty());
        let known = stored.is_some();
        let hash = stored.map_or_else(|| self.dummy_hash.to_string(), str::to_owned);
        let matches = self
            .run(move |memory| verify_blocking(&hash, password.as_bytes(), memory))
            .await?;
        Ok(known && matches)
    }

    /// Whether `stored` was made at another cost than the configured one (or is not argon2id),
    /// so that the next successful login should store a fresh hash.
    pub fn needs_rehash(&self, stored: &str) -> bool {
        cost_of(stored) != Some(cost(&self.params))
    }

    /// Makes the dummy hash cost what most of `stored` cost: after a change of the ARGON2_*
    /// settings, most accounts keep their old cost until they log in, and an unknown name must
    /// take as long to refuse as a known one.
    pub fn match_dummy_to<'a>(&mut self, stored: impl IntoIterator<Item = &'a str>) -> anyhow::Result<()> {
        let mut counts: HashMap<Cost, usize> = HashMap::new();
        for cost in stored.into_iter().filter_map(cost_of) {
            *counts.entry(cost).or_default() += 1;
        }
        let Some(((memory, iterations, lanes), _)) = counts.into_iter().max_by_key(|&(cost, n)| (n, cost)) else {
            return Ok(());
        };
        if Some((memory, iterations, lanes)) == cost_of(&self.dummy_hash) {
            return Ok(());
        }
        let params =
            Params::new(memory, iterations, lanes, None).map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let random_password: [u8; 16] = rand::random();
        self.dummy_hash = hash_blocking(&params, &random_password, &mut Memory::default())?.into();
        Ok(())
    }

    /// The cost of the dummy hash: memory in KiB, iterations, lanes.
    pub fn dummy_cost(&self) -> Option<Cost> {
        cost_of(&self.dummy_hash)
    }

    /// How many hashes and verifications this hasher (and its clones) has run.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// How many hashes are running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// The most hashes that ever ran at once.
    pub fn peak_running(&self) -> usize {
        self.peak_running.load(Ordering::SeqCst)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, AppError> {
        let waiting = self.waiting.fetch_add(1, Ordering::SeqCst) + 1;
        metrics::gauge!(crate::telemetry::HASH_QUEUE).set(waiting as f64);
        let permit = self.permits.clone().acquire_owned().await;
        let waiting = self.waiting.fetch_sub(1, Ordering::SeqCst) - 1;
        metrics::gauge!(crate::telemetry::HASH_QUEUE).set(waiting as f64);
        let permit = permit.map_err(|e| AppError::Internal(e.into()))?;
        self.runs.fetch_add(1, Ordering::Relaxed);
        // The hashing thread holds the permit: a request dropped while it waits (a client
        // that disconnects) cannot free a slot that argon2 is still using.
        let (running, peak) = (self.running.clone(), self.peak_running.clone());
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.threads.run(Box::new(move |memory| {
            let _permit = permit;
            peak.fetch_max(running.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            let result = work(memory);
            running.fetch_sub(1, Ordering::SeqCst);
            let _ = reply.send(result);
        }));
        // No answer: the hash panicked (its thread carries on).
        let result = answer
            .await
            .map_err(|_| AppError::Internal(anyhow::anyhow!("password hashing failed")))?;
        Ok(result?)
    }
}

type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// argon2's working memory (`m` KiB), kept by a hashing thread while hashes follow each
/// other: a fresh allocation per hash costs page faults and a pass to zero the pages before
/// argon2 fills them. What a hash leaves in the memory would make guessing its password
/// cheaper, so the next hash overwrites it or, when none follows within
/// [`IDLE_BEFORE_WIPE`], the thread wipes and frees it: an idle server holds none.
#[derive(Default)]
struct Memory {
    /// Empty unless a hash ran since the last wipe.
    blocks: Vec<Block>,
    /// The most blocks kept between hashes: the configured cost. A stored hash made at a
    /// larger one gets memory of its own, wiped and freed after that hash.
    keep: usize,
}

impl Memory {
    fn keeping(blocks: usize) -> Self {
        Memory {
            keep: blocks,
            ..Memory::default()
        }
    }

    fn lend<T>(&mut self, count: usize, hash: impl FnOnce(&mut [Block]) -> T) -> T {
        if count > self.keep {
            let mut own = vec![Block::default(); count];
            let result = hash(&mut own);
            own.zeroize();
            return result;
        }
        if self.blocks.len() < count {
            self.blocks.resize(count, Block::default());
        }
        hash(&mut self.blocks[..count])
    }

    fn holds_a_hash(&self) -> bool {
        !self.blocks.is_empty()
    }

    fn wipe(&mut self) {
        std::mem::take(&mut self.blocks).zeroize();
    }
}

/// How long a hashing thread waits for another hash before it wipes its memory: under load
/// the next hash comes within microseconds and overwrites it at no cost.
const IDLE_BEFORE_WIPE: Duration = Duration::from_millis(5);

/// Threads that only hash, as many as the permits, at a lower scheduling priority than the
/// runtime's workers: a login burst fills every core with argon2, and the workers (requests
/// that only check a token, the sockets of waiting logins) still run first when they have
/// work. The threads end when the last clone of the hasher is dropped.
#[derive(Clone)]
struct HashingThreads {
    jobs: crossbeam_channel::Sender<Job>,
}

impl HashingThreads {
    /// Fails if a thread cannot be started: with fewer threads than permits, a job could
    /// wait for a thread forever while holding its permit.
    fn start(count: usize, memory_blocks: usize) -> std::io::Result<Self> {
        // Each thread waits on the queue by itself (no lock), so each can give up waiting to
        // wipe its own memory.
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        for _ in 0..count {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name("argon2".into())
                .spawn(move || hashing_thread(&queue, Memory::keeping(memory_blocks)))?;
        }
        Ok(HashingThreads { jobs })
    }

    fn run(&self, job: Job) {
        // The receiving side lives as long as any thread, and threads outlive the sender.
        let _ = self.jobs.send(job);
    }
}

fn hashing_thread(queue: &crossbeam_channel::Receiver<Job>, mut memory: Memory) {
    lower_priority();
    loop {
        let next = match memory.holds_a_hash() {
            true => queue.recv_timeout(IDLE_BEFORE_WIPE),
            false => queue.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let job = match next {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                memory.wipe();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                memory.wipe();
                return;
            }
        };
        // A panicking hash drops its reply (the request fails); the thread goes on.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut memory)));
    }
}

/// Ten steps nicer than the process (at most 19), for the calling thread only: on Linux a
/// nice value belongs to a thread, and glibc's `nice` changes the caller's.
#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: nice reads and writes no memory of ours. Becoming nicer needs no privilege;
    // its answer is not checked, as -1 is both an error and a valid nice value.
    unsafe { libc::nice(10) };
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// An argon2id cost: memory in KiB, iterations, lanes.
pub type Cost = (u32, u32, u32);

fn cost(params: &Params) -> Cost {
    (params.m_cost(), params.t_cost(), params.p_cost())
}

/// The cost a PHC string was made at; `None` for anything but argon2id version 0x13.
fn cost_of(stored: &str) -> Option<Cost> {
    let hash = PasswordHash::new(stored).ok()?;
    if hash.algorithm != argon2::ARGON2ID_IDENT || hash.version != Some(Version::V0x13.into()) {
        return None;
    }
    Params::try_from(&hash).ok().map(|params| cost(&params))
}

/// A PHC string of `password` at `params`, the same as argon2's `PasswordHasher` makes, on
/// `memory`.
fn hash_blocking(params: &Params, password: &[u8], memory: &mut Memory) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let (algorithm, version) = (Algorithm::Argon2id, Version::V0x13);
    let output = argon2_output(algorithm, version, params, password, salt.as_salt(), memory)?;
    let hash = PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: params.try_into().map_err(|e| anyhow::anyhow!("hashing: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// Whether `password` hashes to `stored` (any argon2 variant, at its own cost), as argon2's
/// `PasswordVerifier` decides, on `memory`. `Output` compares in constant time.
fn verify_blocking(stored: &str, password: &[u8], memory: &mut Memory) -> anyhow::Result<bool> {
    let unreadable = |e: &dyn std::fmt::Display| anyhow::anyhow!("stored hash: {e}");
    let stored = PasswordHash::new(stored).map_err(|e| unreadable(&e))?;
    let (Some(salt), Some(expected)) = (stored.salt, stored.hash) else {
        return Ok(false);
    };
    let algorithm = Algorithm::try_from(stored.algorithm).map_err(|e| unreadable(&e))?;
    let version = stored
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| unreadable(&e))?;
    let params = Params::try_from(&stored).map_err(|e| unreadable(&e))?;
    Ok(argon2_output(algorithm, version.unwrap_or_default(), &params, password, salt, memory)? == expected)
}

fn argon2_output(
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    password: &[u8],
    salt: Salt<'_>,
    memory: &mut Memory,
) -> anyhow::Result<Output> {
    let mut salt_bytes = [0u8; 64];
    let salt = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let argon = Argon2::new(algorithm, version, params.clone());
    let length = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    Output::init_with(length, |out| {
        memory
            .lend(params.block_count(), |blocks| {
                argon.hash_password_into_with_memory(password, salt, out, blocks)
            })
            .map_err(Into::into)
    })
    .map_err(|e| anyhow::anyhow!("hashing: {e}"))
}

/// API.md §7: 8..=256 characters, not the username, not a common password.
pub fn check_new_password(field: &'static str, username: &str, password: &str) -> Result<(), AppError> {
    let chars = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
        return Err(AppError::bad_input(
            field,
            format!("password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    if password.to_lowercase() == username.to_lowercase() {
        return Err(AppError::bad_input(field, "password must not be the username"));
    }
    if COMMON_PASSWORDS.contains(password.to_lowercase().as_str()) {
        return Err(AppError::bad_input(field, "password is too common"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a job on a one-thread pool sends back.
    fn on_hashing_thread<T: Send + 'static>(
        threads: &HashingThreads,
        job: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> T {
        let (reply, answer) = std::sync::mpsc::channel();
        threads.run(Box::new(move |memory| {
            let _ = reply.send(job(memory));
        }));
        answer
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the job ran")
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn hashing_threads_run_below_the_request_threads() {
        let threads = HashingThreads::start(1, 8).unwrap();
        // SAFETY: getpriority reads no memory of ours.
        let here = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let there = on_hashing_thread(&threads, |_| unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) });
        assert_eq!(there, (here + 10).min(19));
    }

    #[test]
    fn a_panicking_hash_leaves_its_thread_serving() {
        let threads = HashingThreads::start(1, 8).unwrap();
        threads.run(Box::new(|_| panic!("a hash that panics")));
        assert_eq!(on_hashing_thread(&threads, |_| 42), 42);
    }

    /// The crate's own hasher and verifier, which allocate their memory each time.
    fn crate_hash(algorithm: Algorithm, params: Params, password: &[u8]) -> String {
        use argon2::password_hash::PasswordHasher as _;
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let argon = Argon2::new(algorithm, Version::V0x13, params);
        argon.hash_password(password, &salt).unwrap().to_string()
    }

    fn crate_verifies(stored: &str, password: &[u8]) -> bool {
        use argon2::password_hash::PasswordVerifier as _;
        Argon2::default()
            .verify_password(password, &PasswordHash::new(stored).unwrap())
            .is_ok()
    }

    #[test]
    fn hashes_on_kept_memory_match_the_crates_own() {
        let params = Params::new(64, 2, 1, None).unwrap();
        let mut memory = Memory::keeping(params.block_count());
        let ours = hash_blocking(&params, b"pass phrase", &mut memory).unwrap();
        assert!(ours.starts_with("$argon2id$v=19$m=64,t=2,p=1$"), "{ours}");
        assert!(crate_verifies(&ours, b"pass phrase"));
        assert!(!crate_verifies(&ours, b"pass phrasf"));

        // The crate's hashes, of every variant and of a cost above what the memory keeps.
        let larger = Params::new(256, 1, 2, None).unwrap();
        for (algorithm, params) in [
            (Algorithm::Argon2id, params.clone()),
            (Algorithm::Argon2i, params.clone()),
            (Algorithm::Argon2d, params.clone()),
            (Algorithm::Argon2id, larger),
        ] {
            let theirs = crate_hash(algorithm, params, b"pass phrase");
            assert!(
                verify_blocking(&theirs, b"pass phrase", &mut memory).unwrap(),
                "{theirs}"
            );
            assert!(
                !verify_blocking(&theirs, b"pass phrasf", &mut memory).unwrap(),
                "{theirs}"
            );
        }
        // Only the configured cost's memory stays.
        assert_eq!(memory.blocks.len(), params.block_count());
        memory.wipe();
        assert!(!memory.holds_a_hash());
    }

    #[test]
    fn a_hashing_thread_wipes_its_memory_when_no_hash_follows() {
        let params = Params::new(64, 2, 1, None).unwrap();
        let threads = HashingThreads::start(1, params.block_count()).unwrap();
        // Both queued at once: the second job follows the hash and finds its memory unwiped
        // (a hash there would overwrite it).
        let (reply, answer) = std::sync::mpsc::channel();
        let second = reply.clone();
        threads.run(Box::new(move |memory| {
            let _ = reply.send(hash_blocking(&params, b"pass phrase", memory).is_ok());
        }));
        threads.run(Box::new(move |memory| {
            let _ = second.send(memory.holds_a_hash());
        }));
        assert!(answer.recv().unwrap(), "the hash failed");
        assert!(answer.recv().unwrap(), "wiped between two hashes");
        // Idle for longer than IDLE_BEFORE_WIPE: the memory is wiped and freed.
        assert!(
            soon(|| !on_hashing_thread(&threads, |memory| memory.holds_a_hash())),
            "still holds the hash"
        );
    }

    /// Whether `check` holds within a few seconds. The hashing threads run nicer than
    /// everything else, so on a busy machine one may wait well past `IDLE_BEFORE_WIPE` for a
    /// core; each check is a job, after which the thread is idle again, so the checks come
    /// ever further apart, or they would keep a starved thread from ever being idle.
    fn soon(mut check: impl FnMut() -> bool) -> bool {
        let mut wait = IDLE_BEFORE_WIPE * 10;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            std::thread::sleep(wait);
            if check() {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            wait *= 2;
        }
    }

    #[test]
    fn every_idle_hashing_thread_wipes_its_memory() {
        let params = Params::new(64, 2, 1, None).unwrap();
        let threads = HashingThreads::start(2, params.block_count()).unwrap();
        // Each job waits at a barrier for the other, so each of the two threads runs one.
        let on_both = |job: fn(&mut Memory) -> bool| {
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let (reply, answer) = std::sync::mpsc::channel();
            for _ in 0..2 {
                let (barrier, reply) = (barrier.clone(), reply.clone());
                threads.run(Box::new(move |memory| {
                    let _ = reply.send(job(memory));
                    barrier.wait();
                }));
            }
            [answer.recv().unwrap(), answer.recv().unwrap()]
        };
        let hashed = on_both(|memory| {
            let params = Params::new(64, 2, 1, None).unwrap();
            hash_blocking(&params, b"pass phrase", memory).is_ok() && memory.holds_a_hash()
        });
        assert_eq!(hashed, [true, true]);
        assert!(
            soon(|| on_both(|memory| memory.holds_a_hash()) == [false, false]),
            "a thread still holds its hash"
        );
    }

    #[test]
    fn a_hash_without_salt_or_output_matches_nothing() {
        let mut memory = Memory::default();
        assert!(!verify_blocking("$argon2id$v=19$m=64,t=2,p=1", b"", &mut memory).unwrap());
        assert!(verify_blocking("not a hash", b"", &mut memory).is_err());
    }

    #[test]
    fn the_list_holds_enough_common_passwords() {
        assert!(COMMON_PASSWORDS.len() >= 10_000);
        assert!(COMMON_PASSWORDS.contains("password"));
        assert!(COMMON_PASSWORDS.contains("iloveyou"));
    }

    #[test]
    fn password_rules() {
        let field = |r: Result<(), AppError>| match r {
            Err(AppError::BadUserInput { field, message }) => (field, message),
            other => panic!("expected BadUserInput, got {other:?}"),
        };
        assert!(field(check_new_password("password", "alice", "short"))
            .1
            .contains("8 to 256"));
        assert!(field(check_new_password("password", "alice", &"x".repeat(257)))
            .1
            .contains("8 to 256"));
        assert!(field(check_new_password("password", "alice123", "ALICE123"))
            .1
            .contains("username"));
        assert!(field(check_new_password("password", "alice", "Password1"))
            .1
            .contains("common"));
        assert_eq!(
            field(check_new_password("newPassword", "alice", "qwertyuiop")).0,
            "newPassword"
        );
        assert!(check_new_password("password", "alice", "correct horse battery").is_ok());
        // 256 multi-byte characters are within the limit: the rule counts characters, not bytes.
        assert!(check_new_password("password", "alice", &"é".repeat(256)).is_ok());
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let hasher = PasswordHasher::new(64, 1, 1).unwrap();
        let hash = hasher.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(hasher.verify("correct horse", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("wrong horse", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("correct horse", None).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_at_another_cost_need_a_rehash_and_the_dummy_follows_the_majority() {
        let old = PasswordHasher::new(64, 1, 1).unwrap();
        let mut new = PasswordHasher::new(128, 2, 1).unwrap();
        let old_hash = old.hash("correct horse").await.unwrap();
        assert!(new.needs_rehash(&old_hash));
        assert!(!new.needs_rehash(&new.hash("correct horse").await.unwrap()));
        assert_eq!(new.dummy_cost(), Some((128, 2, 1)));
        let new_hash = new.hash("x").await.unwrap();
        new.match_dummy_to([old_hash.as_str(), old_hash.as_str(), new_hash.as_str()])
            .unwrap();
        assert_eq!(new.dummy_cost(), Some((64, 1, 1)));
    }

    #[tokio::test]
    async fn long_and_unicode_passwords_are_kept_whole() {
        let hasher = PasswordHasher::new(64, 1, 1).unwrap();
        let long = format!("{}b", "a".repeat(255));
        let hash = hasher.hash(&long).await.unwrap();
        assert!(!hasher
            .verify(&format!("{}c", "a".repeat(255)), Some(&hash))
            .await
            .unwrap());
        assert!(hasher.verify(&long, Some(&hash)).await.unwrap());
        let spaced = "pass phrase with spaces 🔑 é";
        assert!(check_new_password("password", "alice", spaced).is_ok());
        let hash = hasher.hash(spaced).await.unwrap();
        assert!(hasher.verify(spaced, Some(&hash)).await.unwrap());
    }
}
