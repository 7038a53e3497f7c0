//! Logs of the processes a test starts (operators, Prometheus, control-plane components): one
//! file per process under `target/test-logs/`, named after the test, never on the shared
//! stdout. They are printed only when the test fails.
//!
//! Printing is done by a panic hook rather than by the guards' `Drop`: a test that killed its
//! operator (the restart and fault tests) no longer holds anything whose `Drop` could print
//! that operator's log, and its log is often the one that explains the failure. The hook runs
//! on the panicking thread, which libtest names after the test, so it prints exactly the logs
//! that test registered; libtest captures what it prints and shows it with the failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

/// How much of each log a failing test prints (the whole file stays on disk).
const TAIL_LINES: usize = 80;

/// Logs registered per test: (what, path).
static LOGS: Mutex<BTreeMap<String, Vec<(String, PathBuf)>>> = Mutex::new(BTreeMap::new());

/// The running test's name as libtest gives it (`module::test`), from the thread name; a
/// program without libtest (the soak) names its thread itself.
pub fn test_name() -> String {
    std::thread::current().name().unwrap_or("unnamed").to_owned()
}

/// Where test logs go: `<target>/test-logs`.
pub fn log_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).with_file_name("test-logs")
}

/// A fresh log file for `what` (e.g. `operator`), `<test>-<n>-<what>.log`, registered so that
/// a failure of this test prints it. The same test gets the same names on every run, so
/// files are overwritten rather than piling up.
pub fn create(what: &str) -> (std::fs::File, PathBuf) {
    let dir = log_dir();
    std::fs::create_dir_all(&dir).expect("create target/test-logs");
    let test = test_name();
    let n = LOGS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&test).map_or(0, Vec::len) + 1;
    let path = dir.join(format!("{}-{n}-{what}.log", test.replace("::", ".")));
    let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    register(what, &path);
    (file, path)
}

/// Print `path` (written by someone else, e.g. a control-plane component) if this test fails.
pub fn register(what: &str, path: &Path) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            print_logs_of(&test_name());
        }));
    });
    let mut logs = LOGS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let registered = logs.entry(test_name()).or_default();
    if registered.iter().all(|(_, p)| p != path) {
        registered.push((what.to_owned(), path.to_owned()));
    }
}

/// Print the tail of every log `test` registered, once.
fn print_logs_of(test: &str) {
    let logs = LOGS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(test).unwrap_or_default();
    for (what, path) in logs {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
        eprintln!("--- {what} log {} (last {} of {} lines):", path.display(), tail.len(), lines.len());
        for line in tail {
            eprintln!("{line}");
        }
    }
}
