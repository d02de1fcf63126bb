//! The binary under test sees only the configuration a test gives it, never `WSPUSH_*`
//! variables exported in the developer's shell.
//!
//! A test cannot export variables into its own process safely (other tests run on other threads
//! of it), so the end-to-end check re-runs this test binary as a child with the variables set,
//! exactly as a developer's shell would pass them, and the child starts the server.

mod common;
use common::*;

use std::ffi::OsString;
use std::process::Command;

/// Set only in the re-executed copy of this binary.
const CHILD_MARKER: &str = "BINARY_ENV_TEST_CHILD";

/// The test the child runs; must be the name of the test function below.
const CHILD_TEST: &str = "binary_ignores_wspush_variables_exported_in_the_shell";

#[test]
fn scrub_removes_exactly_the_inherited_wspush_variables() {
    let inherited = [
        ("WSPUSH_MODE", "echo"),
        ("WSPUSH_AUTH_SECRET", "secret"),
        ("RUST_LOG", "debug"),
        ("PATH", "/usr/bin"),
        ("XWSPUSH_MODE", "echo"),
        ("wspush_mode", "echo"),
        ("WSPUSH", "echo"),
    ]
    .map(|(name, value)| (OsString::from(name), OsString::from(value)));
    let mut command = Command::new("true");
    scrub_wspush_env(&mut command, inherited);
    let mut changes: Vec<_> = command
        .get_envs()
        .map(|(name, value)| (name.to_str().unwrap(), value))
        .collect();
    changes.sort();
    // `None` is a removal; nothing else is touched, so the rest stays inherited.
    assert_eq!(
        changes,
        [("WSPUSH_AUTH_SECRET", None), ("WSPUSH_MODE", None)]
    );
}

#[test]
fn binary_ignores_wspush_variables_exported_in_the_shell() {
    if std::env::var_os(CHILD_MARKER).is_some() {
        // In the child, which inherited the variables below. Had they reached the server, it
        // would echo (WSPUSH_MODE) or demand signed logins (WSPUSH_AUTH_SECRET); the plain
        // push protocol logs alice in.
        let server = BinaryServer::start(&[]);
        RawClient::login(server.addr, "alice");
        return;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_MARKER, "1")
        .env("WSPUSH_MODE", "echo")
        .env("WSPUSH_AUTH_SECRET", "exported by the developer")
        .output()
        .expect("re-run the test binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child test failed or did not run ({}):\n{stdout}\n{stderr}",
        output.status
    );
}
