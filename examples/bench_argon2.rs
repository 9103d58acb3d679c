//! The argon2 ceiling for `bench/run`: what the argon2 crate alone does at the configured
//! cost (`ARGON2_MEMORY_KIB`, `ARGON2_ITERATIONS`, `ARGON2_PARALLELISM`, the server's
//! defaults when unset) with one thread per core, for `BENCH_SECONDS` (default 5).
//! Prints one line: `argon2 <hashes/s> hashes/s (<n> threads, m=.. t=.. p=..)`.
//!
//! Each thread hashes on memory it keeps (`hash_password_into_with_memory`), the crate's
//! fastest use: a fresh allocation per hash, as its `PasswordHasher` makes, is slower by a
//! margin that depends on the allocator.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::SaltString;
use argon2::{Algorithm, Argon2, Block, Params, Version};

fn setting(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // The defaults of `gatehouse serve` (src/config.rs).
    let memory_kib = setting("ARGON2_MEMORY_KIB", 19456);
    let iterations = setting("ARGON2_ITERATIONS", 2);
    let parallelism = setting("ARGON2_PARALLELISM", 1);
    let seconds = setting("BENCH_SECONDS", 5);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let params = Params::new(memory_kib, iterations, parallelism, None).expect("BUG: invalid ARGON2_* settings");

    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (done, stop, params) = (done.clone(), stop.clone(), params.clone());
            std::thread::spawn(move || {
                let mut memory = vec![Block::default(); params.block_count()];
                let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
                let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                while !stop.load(Ordering::Relaxed) {
                    let (salt, mut salt_bytes) = (SaltString::generate(&mut rand::rngs::OsRng), [0u8; 64]);
                    let salt = salt.as_salt().decode_b64(&mut salt_bytes).expect("BUG: salt");
                    argon
                        .hash_password_into_with_memory(b"correct horse battery staple", salt, &mut output, &mut memory)
                        .expect("BUG: hashing failed");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds.into()));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().expect("BUG: worker panicked");
    }
    // Hashes finished while the last ones drained are counted over the time they took.
    let elapsed = started.elapsed().as_secs_f64();
    let rate = done.load(Ordering::Relaxed) as f64 / elapsed;
    println!("argon2 {rate:.1} hashes/s ({threads} threads, m={memory_kib} t={iterations} p={parallelism})");
}
