//! Crash points for fault tests: with `EBS_CRASH_AT=<scope>:<n>` in its environment, the server
//! kills itself with SIGKILL (as `kill -9` would) right after the n-th catalog commit made
//! inside [`scoped`]`(<scope>, …)`, counting from start-up. Without the variable a commit pays
//! one check of a value read once.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    /// The scope the calling thread is in.
    static SCOPE: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// Commits counted in the configured scope.
static COUNT: AtomicU64 = AtomicU64::new(0);

/// `(scope, n)` from `EBS_CRASH_AT`, if set and well formed.
fn target() -> Option<&'static (String, u64)> {
    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let v = std::env::var("EBS_CRASH_AT").ok()?;
            let (scope, n) = v.rsplit_once(':')?;
            let n = n.parse().ok()?;
            tracing::warn!(
                scope,
                n,
                "EBS_CRASH_AT is set: this server kills itself on purpose"
            );
            Some((scope.to_string(), n))
        })
        .as_ref()
}

/// Runs `f` with the calling thread in `scope`.
pub fn scoped<T>(scope: &'static str, f: impl FnOnce() -> T) -> T {
    let outer = SCOPE.with(|s| s.replace(Some(scope)));
    let r = f();
    SCOPE.with(|s| s.set(outer));
    r
}

/// Called after each catalog commit.
pub fn after_commit() {
    let Some((scope, n)) = target() else {
        return;
    };
    if SCOPE.with(|s| s.get()) != Some(scope.as_str()) {
        return;
    }
    if COUNT.fetch_add(1, Ordering::SeqCst) + 1 == *n {
        // SAFETY: kill(2) on this process with a constant signal; it does not return.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
