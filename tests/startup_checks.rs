//! Configurations that cannot work are refused at start-up with one clear error naming the
//! option; the binary's start-up log says in words how it is protected.

mod common;
use common::*;

use std::process::Command;

/// Runs the binary with `args` (on free loopback ports) and returns whether it started, and
/// what it logged on stderr; a refused configuration exits at once.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_wspush"))
        .args(["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .output()
        .expect("run wspush");
    assert!(!output.status.success(), "started with {args:?} {env:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn an_empty_auth_secret_is_refused_not_used() {
    let log = refused(&[], &[("WSPUSH_AUTH_SECRET", "")]);
    assert!(
        log.contains("--auth-secret (WSPUSH_AUTH_SECRET) is empty"),
        "{log}"
    );
}

#[test]
fn an_auth_secret_in_echo_mode_is_refused() {
    let log = refused(&["--mode", "echo", "--auth-secret", "s"], &[]);
    assert!(log.contains("no effect in echo mode"), "{log}");
}

#[test]
fn an_empty_api_key_is_refused() {
    let log = refused(&["--api-key", ""], &[]);
    assert!(log.contains("--api-key is empty"), "{log}");
}

#[test]
fn nonsensical_limits_and_timers_are_refused_naming_the_option() {
    for (args, option) in [
        (&["--max-message-size", "0"][..], "--max-message-size"),
        (&["--max-connections", "0"], "--max-connections"),
        (
            &["--ping-interval", "0s"],
            "--ping-interval must be longer than 0",
        ),
        (
            &["--ping-interval", "60s", "--idle-timeout", "30s"],
            "shorter than --idle-timeout",
        ),
        (&["--allowed-origins", "app.example"], "--allowed-origins"),
        (
            &["--max-deliveries-per-turn", "0"],
            "--max-deliveries-per-turn",
        ),
        (&["--socket-send-buffer", "100"], "--socket-send-buffer"),
    ] {
        let log = refused(args, &[]);
        assert!(log.contains(option), "{args:?}: {log}");
    }
}

#[test]
fn start_up_log_says_how_the_server_is_protected() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_wspush"))
        .args(["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"])
        .args([
            "--allowed-origins",
            "https://a.example, https://B.example:443/",
        ])
        .args(["--auth-secret", "s"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wspush");
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    while !log.contains("push API listening") {
        let line = lines.recv_timeout(WAIT).expect("start-up lines");
        log.push_str(&line);
        log.push('\n');
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        log.contains("signed logins (URLs valid at most 1h ahead)"),
        "{log}"
    );
    assert!(
        log.contains("browsers may connect only from: https://a.example, https://b.example"),
        "{log}"
    );
    assert!(log.contains("no API key: loopback clients only"), "{log}");
}

#[test]
fn several_workers_without_a_cluster_are_refused() {
    let log = refused(&["--workers", "3"], &[]);
    assert!(log.contains("--workers 3 needs --redis"), "{log}");
    let log = refused(&["--workers", "0"], &[]);
    assert!(log.contains("--workers must be at least 1"), "{log}");
    let log = refused(&["--redis", "rediss://cache.example"], &[]);
    assert!(log.contains("rediss://"), "{log}");
}
