//! A real `redis-server` for the cluster tests: started on a free loopback port without
//! persistence, ready once it answers PING, killed on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{BinaryServer, WAIT};

/// A Redis server owned by one test.
pub struct RedisServer {
    pub port: u16,
    child: Child,
}

impl RedisServer {
    /// Starts `redis-server` (installed by `.ci/run`) on a port the kernel says is free.
    pub fn start() -> Self {
        let deadline = Instant::now() + WAIT;
        loop {
            // The port may be taken between this probe and Redis's bind: then try another.
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|probe| probe.local_addr())
                .expect("free port")
                .port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is needed for the cluster tests (.ci/run installs it)");
            let mut server = Self { port, child };
            if server.wait_ready(deadline) {
                return server;
            }
            let _ = server.child.kill();
            let _ = server.child.wait();
            assert!(Instant::now() < deadline, "redis-server did not start");
        }
    }

    /// Kills this Redis (as a crash would: SIGKILL, nothing saved).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts Redis again on the same port, after `kill`.
    pub fn restart(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            self.child = Command::new("redis-server")
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("restart redis-server");
            if self.wait_ready(deadline) {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not restart");
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Waits until Redis answers PING; false if the process exited first.
    fn wait_ready(&mut self, deadline: Instant) -> bool {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(reply) = self.command(&["PING"]) {
                if reply.starts_with("+PONG") {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Sends one command on a fresh connection and returns the raw reply.
    pub fn command(&self, args: &[&str]) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(WAIT))?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes())?;
        let mut reply = vec![0; 4096];
        let n = stream.read(&mut reply)?;
        Ok(String::from_utf8_lossy(&reply[..n]).into_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy in front of a Redis that can make its current connections go silent: they stay
/// open, but nothing is forwarded any more (what a failover can do to a subscription). New
/// connections are forwarded normally.
pub struct SilentProxy {
    pub port: u16,
    silence: std::sync::Arc<std::sync::Mutex<Vec<std::sync::Arc<std::sync::atomic::AtomicBool>>>>,
}

impl SilentProxy {
    /// A proxy to `127.0.0.1:upstream` on a free port, served by threads of its own.
    pub fn start(upstream: u16) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let silence: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let flags = Arc::clone(&silence);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let silent = Arc::new(AtomicBool::new(false));
                flags.lock().unwrap().push(Arc::clone(&silent));
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let silent = Arc::clone(&silent);
                    std::thread::spawn(move || {
                        let mut buf = vec![0; 65536];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 {
                                let _ = to.shutdown(std::net::Shutdown::Write);
                                return;
                            }
                            if !silent.load(Ordering::SeqCst) && to.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Self { port, silence }
    }

    /// `redis://127.0.0.1:<port>` of the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Makes every connection made so far silent.
    pub fn silence_current(&self) {
        for flag in self.silence.lock().unwrap().iter() {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// A `wspush` node of the cluster on `redis` (timers off, plus `args`), once it is subscribed
/// to broadcasts.
pub fn cluster_node(redis: &str, args: &[&str]) -> BinaryServer {
    let mut all = vec![
        "--redis",
        redis,
        "--ping-interval",
        "off",
        "--idle-timeout",
        "off",
    ];
    all.extend_from_slice(args);
    let server = BinaryServer::start(&all);
    let deadline = Instant::now() + WAIT;
    loop {
        let line = server
            .log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the node did not join the cluster");
        if line.contains("cluster: up") {
            return server;
        }
    }
}

/// Waits until `done` holds, checking every 20 ms; fails with `what` after `WAIT`.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
