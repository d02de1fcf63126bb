//! A real browser against the real binary: headless Chromium, driven over its DevTools protocol
//! (CDP), opens `wss://localhost:<port>/` to `wspush` serving the committed test certificate,
//! logs in, negotiates permessage-deflate, receives what the push API sends it (compressed when
//! long) and closes cleanly; and its plain `ws://` attempt
//! on the TLS port fails. What is asserted is what the page saw (its `WebSocket` object's
//! messages, attributes and events), plus the handshake headers Chromium reports to DevTools.
//!
//! Chromium trusts only the test key (`--ignore-certificate-errors-spki-list` with
//! `tests/certs/ecdsa.spki-sha256`, made by `scripts/gen-test-certs.sh`), not any certificate.
//! It must be installed (`.ci/run` installs it: `apt-get install chromium`); without it these
//! tests fail, they do not skip.

mod common;
use common::http::Http;
use common::tls::cert_path;
use common::*;

use std::fs::{self, File};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// The browser: Debian's `chromium` package (a wrapper script that execs the real binary).
const CHROMIUM: &str = "/usr/bin/chromium";

/// How long a promise in the page may wait for the server before it rejects: well inside
/// `WAIT`, so a page that waits in vain fails with its own message, not a CDP read timeout.
const PAGE_WAIT_MS: u128 = WAIT.as_millis() / 2;

/// A fresh directory under the system's temporary directory; removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return Self(path),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("create {}: {e}", path.display()),
            }
        }
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // A browser process that has been killed but not yet torn down may still add a file;
        // try again briefly, and only warn if it stays.
        let deadline = Instant::now() + WAIT;
        while let Err(e) = fs::remove_dir_all(&self.0) {
            if e.kind() == ErrorKind::NotFound {
                return;
            }
            if Instant::now() >= deadline {
                eprintln!("could not remove {}: {e}", self.0.display());
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A running Chromium in a process group of its own, with its profile and log in a temporary
/// directory. Drop kills the whole group (browser, renderers, helpers) and removes the
/// directory; when the test is panicking, it first prints the end of Chromium's log.
struct Chromium {
    child: Child,
    /// Chromium's stdout and stderr.
    log: PathBuf,
    /// Holds `profile/` (the `--user-data-dir`) and the log; declared last, so removed last.
    dir: TempDir,
}

impl Chromium {
    /// Starts headless Chromium on a blank page with DevTools on a free loopback port, trusting
    /// certificates for the public key whose SPKI hash is `trusted_spki` (base64 SHA-256).
    fn launch(trusted_spki: &str) -> Self {
        let dir = TempDir::new("wspush-browser");
        let profile = dir.path().join("profile");
        fs::create_dir(&profile).unwrap();
        let log = dir.path().join("chromium.log");
        let out = File::create(&log).unwrap();
        let child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                // Without these Chromium reaches for the network at start, and this machine's
                // closed network answers by refusing its connections.
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!(
                "--ignore-certificate-errors-spki-list={trusted_spki}"
            ))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {CHROMIUM} ({e}): the browser tests need Chromium; .ci/run \
                     installs it (apt-get install chromium)"
                )
            });
        Self { child, log, dir }
    }

    /// Waits (bounded) for Chromium to write `DevToolsActivePort` and returns the browser's
    /// DevTools WebSocket URL from it.
    fn devtools_url(&mut self) -> String {
        let file = self.dir.path().join("profile/DevToolsActivePort");
        let deadline = Instant::now() + WAIT;
        loop {
            // The file may be seen half-written: only a port line and a path line will do.
            if let Ok(text) = fs::read_to_string(&file) {
                let mut lines = text.lines();
                if let (Some(Ok(port)), Some(path)) =
                    (lines.next().map(str::parse::<u16>), lines.next())
                {
                    if path.starts_with("/devtools/browser/") {
                        return format!("ws://127.0.0.1:{port}{path}");
                    }
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{CHROMIUM} exited ({status}) before DevTools was listening");
            }
            assert!(
                Instant::now() < deadline,
                "{CHROMIUM} wrote no DevTools port to {} in {WAIT:?}",
                file.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // The wrapper script execs the browser, so the child is the group's leader.
        let group = self.child.id() as libc::pid_t;
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("--- end of Chromium's log ---\n{}", tail.join("\n"));
        }
    }
}

/// Headless Chromium with one CDP session attached to a fresh page. Commands are sent and their
/// replies awaited one at a time; the events that arrive meanwhile are kept for
/// [`Browser::wait_for_event`].
struct Browser {
    cdp: WebSocket<TcpStream>,
    /// The flattened session of the page target, which page commands carry.
    session: String,
    next_id: u64,
    /// Events read while waiting for replies and not yet taken.
    events: Vec<Value>,
    /// Dropped after the CDP connection: kills the browser and removes its directory.
    _chromium: Chromium,
}

impl Browser {
    /// Launches Chromium trusting the committed test certificate's key, connects to its
    /// DevTools endpoint and attaches to a new blank page.
    fn launch() -> Self {
        let spki_file = cert_path("ecdsa.spki-sha256");
        let spki = fs::read_to_string(&spki_file)
            .unwrap_or_else(|e| panic!("{}: {e}", spki_file.display()));
        let mut chromium = Chromium::launch(spki.trim());
        let url = chromium.devtools_url();
        let port = url
            .strip_prefix("ws://127.0.0.1:")
            .and_then(|rest| rest.split('/').next())
            .and_then(|port| port.parse().ok())
            .unwrap();
        let stream =
            TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), WAIT)
                .expect("connect to Chromium's DevTools port");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        let (cdp, _) = tungstenite::client(url.as_str(), stream)
            .unwrap_or_else(|e| panic!("CDP handshake with {url}: {e}"));
        let mut browser = Self {
            cdp,
            session: String::new(),
            next_id: 0,
            events: Vec::new(),
            _chromium: chromium,
        };
        let target =
            browser.browser_command("Target.createTarget", json!({ "url": "about:blank" }));
        let attached = browser.browser_command(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser
    }

    /// Sends `method` with `params` to the page and returns the reply's `result`; a CDP error
    /// fails the test.
    fn command(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(Some(&session), method, params)
    }

    /// [`Browser::command`] to the browser itself rather than the page.
    fn browser_command(&mut self, method: &str, params: Value) -> Value {
        self.send(None, method, params)
    }

    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut request = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            request["sessionId"] = json!(session);
        }
        self.cdp
            .send(Message::text(request.to_string()))
            .unwrap_or_else(|e| panic!("send {method} over CDP: {e}"));
        let deadline = Instant::now() + WAIT;
        loop {
            let message = self.read(deadline, method);
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    panic!("{method} failed: {error}");
                }
                return message["result"].clone();
            }
            if message.get("method").is_some() {
                self.events.push(message);
            }
        }
    }

    /// Reads the next CDP message, waiting at most until `deadline`.
    fn read(&mut self, deadline: Instant, waiting_for: &str) -> Value {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no CDP answer for {waiting_for} in {WAIT:?}"
            );
            self.cdp.get_ref().set_read_timeout(Some(left)).unwrap();
            let message = self
                .cdp
                .read()
                .unwrap_or_else(|e| panic!("read CDP while waiting for {waiting_for}: {e}"));
            if let Message::Text(text) = message {
                return serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("CDP message is not JSON ({e}): {text}"));
            }
        }
    }

    /// Takes the first event `method` (kept or still to come) whose params satisfy `matches`,
    /// and returns its params; bounded by `WAIT`. Events are only sent once their domain is
    /// enabled (e.g. `Network.enable`).
    fn wait_for_event(&mut self, method: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let is_it = |event: &Value| event["method"] == method && matches(&event["params"]);
        if let Some(i) = self.events.iter().position(is_it) {
            return self.events.remove(i)["params"].take();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let mut message = self.read(deadline, method);
            if is_it(&message) {
                return message["params"].take();
            }
            if message.get("method").is_some() {
                self.events.push(message);
            }
        }
    }

    /// Evaluates the JavaScript expression `js` in the page; if it is a promise, waits for it.
    /// Returns the value (as JSON); a thrown exception or rejected promise fails the test with
    /// its text.
    fn evaluate(&mut self, js: &str) -> Value {
        let reply = self.command(
            "Runtime.evaluate",
            json!({ "expression": js, "awaitPromise": true, "returnByValue": true }),
        );
        if let Some(details) = reply.get("exceptionDetails") {
            let text = details["exception"]["description"]
                .as_str()
                .or(details["text"].as_str())
                .unwrap_or_default();
            panic!("the page threw: {text}\nin: {js}\n{details}");
        }
        reply["result"]["value"].clone()
    }

    /// Calls the JavaScript function `function` (source text) with `args` (passed as JSON) in
    /// the page, as [`Browser::evaluate`] does.
    fn call(&mut self, function: &str, args: &[Value]) -> Value {
        let args: Vec<String> = args.iter().map(Value::to_string).collect();
        self.evaluate(&format!("({function})({})", args.join(", ")))
    }
}

/// Opens `window.page.ws` to `url`, records every message it receives in `page.received` and
/// sends `uid` once open; resolves with the first message (the login answer) and the socket's
/// `protocol` and `extensions`.
const OPEN_AND_LOG_IN: &str = r#"(url, uid, ms) => new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    window.page = { ws, received: [] };
    const timer = setTimeout(() => reject(new Error(`no login answer in ${ms} ms`)), ms);
    ws.onopen = () => ws.send(uid);
    ws.onmessage = (event) => {
        page.received.push(event.data);
        if (page.received.length === 1) {
            clearTimeout(timer);
            resolve({ answer: event.data, protocol: ws.protocol, extensions: ws.extensions });
        }
    };
    ws.onclose = (event) => {
        clearTimeout(timer);
        reject(new Error(`closed before the login answer: ${event.code}, clean ${event.wasClean}`));
    };
})"#;

/// Resolves with `page.received` once it holds `count` messages.
const RECEIVED: &str = r#"(count, ms) => new Promise((resolve, reject) => {
    const check = () => page.received.length >= count && (resolve(page.received), true);
    if (check()) return;
    const timer = setTimeout(
        () => reject(new Error(`${count} messages not in ${ms} ms: ${JSON.stringify(page.received)}`)),
        ms);
    page.ws.addEventListener("message", () => check() && clearTimeout(timer));
    page.ws.addEventListener("close", (event) => {
        clearTimeout(timer);
        reject(new Error(`closed (${event.code}) with ${JSON.stringify(page.received)}`));
    });
})"#;

/// Sends `text` on `page.ws`.
const SEND: &str = r#"(text) => { page.ws.send(text); return true; }"#;

/// Closes `page.ws` with `code`; resolves with what the close event said.
const CLOSE: &str = r#"(code, ms) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no close event in ${ms} ms`)), ms);
    page.ws.onclose = (event) => {
        clearTimeout(timer);
        resolve({ code: event.code, reason: event.reason, wasClean: event.wasClean });
    };
    page.ws.close(code);
})"#;

/// Opens a WebSocket to `url` and resolves, at its close event, with the events it saw before
/// and what the close event said.
const ATTEMPT: &str = r#"(url, ms) => new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const seen = [];
    const timer = setTimeout(() => reject(new Error(`no close event in ${ms} ms: ${seen}`)), ms);
    ws.onopen = () => seen.push("open");
    ws.onerror = () => seen.push("error");
    ws.onmessage = (event) => seen.push(`message ${event.data}`);
    ws.onclose = (event) => {
        clearTimeout(timer);
        resolve({ seen, code: event.code, wasClean: event.wasClean });
    };
})"#;

/// The real binary serving wss with the committed ECDSA test certificate.
fn wss_server() -> BinaryServer {
    let cert = cert_path("ecdsa.pem");
    let key = cert_path("ecdsa.key");
    BinaryServer::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
}

/// `POST path` to the push API with `body`; asserts 200 and returns the JSON answer.
fn post(api: SocketAddr, path: &str, body: &str) -> Value {
    let response = Http::connect(api).request(format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    assert_eq!(response.status(), 200, "{path}: {}", response.text());
    response.json()
}

/// The value of header `name` (any case) in a CDP headers object, if present.
fn header<'a>(headers: &'a Value, name: &str) -> Option<&'a str> {
    headers.as_object()?.iter().find_map(|(key, value)| {
        key.eq_ignore_ascii_case(name)
            .then(|| value.as_str())
            .flatten()
    })
}

#[test]
fn a_browser_logs_in_over_wss_and_receives_pushes_from_the_api() {
    let server = wss_server();
    let api = server.api.unwrap();
    let mut browser = Browser::launch();
    browser.command("Network.enable", json!({}));
    let url = format!("wss://localhost:{}/", server.addr.port());

    let opened = browser.call(
        OPEN_AND_LOG_IN,
        &[json!(url), json!("browser-1"), json!(PAGE_WAIT_MS)],
    );
    // Chromium's real offer (`permessage-deflate; client_max_window_bits`), accepted without
    // context takeover either way (`--compression shared`, the default).
    let agreed = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    assert_eq!(
        opened,
        json!({
            "answer": "login success, your uid is browser-1",
            "protocol": "",
            "extensions": agreed,
        })
    );
    let request = browser.wait_for_event("Network.webSocketWillSendHandshakeRequest", |_| true);
    let response = browser.wait_for_event("Network.webSocketHandshakeResponseReceived", |_| true);
    assert!(
        header(&request["request"]["headers"], "Sec-WebSocket-Extensions")
            .is_some_and(|offer| offer.contains("permessage-deflate")),
        "{request:#}"
    );
    assert_eq!(response["response"]["status"], 101, "{response:#}");
    assert_eq!(
        header(&response["response"]["headers"], "Sec-WebSocket-Extensions"),
        Some(agreed),
        "{response:#}"
    );

    // Short pushes go out plain; long ones (over the 512 B threshold) compressed, a broadcast
    // compressed once for everyone. The page also sends a long message, which Chromium
    // compresses, to itself.
    let long = |tag: &str| {
        let items: Vec<String> = (0..100)
            .map(|i| format!(r#"{{"id":{i},"tag":"{tag}"}}"#))
            .collect();
        format!("[{}]", items.join(","))
    };
    let sent = post(api, "/send/browser-1", "to browser-1 only");
    assert_eq!(sent, json!({ "connections": 1 }));
    let broadcast = post(api, "/broadcast", "to everyone");
    assert_eq!(broadcast, json!({ "connections": 1 }));
    post(api, "/send/browser-1", &long("direct"));
    post(api, "/broadcast", &long("broadcast"));
    browser.call(
        SEND,
        &[json!(format!("browser-1:{}", long("from the page")))],
    );
    let received = browser.call(RECEIVED, &[json!(6), json!(PAGE_WAIT_MS)]);
    assert_eq!(
        received,
        json!([
            "login success, your uid is browser-1",
            "to browser-1 only",
            "to everyone",
            long("direct"),
            long("broadcast"),
            long("from the page"),
        ])
    );
    // Compressed in fact: three long messages of about 2.4 KB each left in fewer bytes.
    let stats = Http::connect(api)
        .request("GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .json();
    let out = stats["bytes"]["out"].as_u64().unwrap();
    assert!(out < 3 * long("direct").len() as u64, "{stats}");

    let closed = browser.call(CLOSE, &[json!(1000), json!(PAGE_WAIT_MS)]);
    assert_eq!(closed["code"], 1000, "{closed}");
    assert_eq!(closed["wasClean"], true, "{closed}");
}

#[test]
fn a_browser_s_plain_ws_attempt_on_the_tls_port_fails() {
    let server = wss_server();
    let mut browser = Browser::launch();
    let url = format!("ws://localhost:{}/", server.addr.port());
    let attempt = browser.call(ATTEMPT, &[json!(url), json!(PAGE_WAIT_MS)]);
    assert_eq!(
        attempt,
        json!({ "seen": ["error"], "code": 1006, "wasClean": false })
    );
}
