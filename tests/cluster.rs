//! Several real `wspush` processes sharing users through a real Redis: messages for a uid
//! reach the node that holds it (and nobody twice), broadcasts reach every node, the push API
//! of any node reaches any user, a login is answered only once a push can reach it, and
//! programs outside the cluster can publish into it with the documented envelope.

mod common;

use std::time::Instant;

use common::http::Http;
use common::redis::{cluster_node, wait_until, RedisServer};
use common::*;

/// A node of the cluster on `redis`, once it is subscribed to broadcasts.
fn node(redis: &RedisServer) -> BinaryServer {
    cluster_node(&redis.url(), &[])
}

/// The next data frame `client` receives, as text.
fn next_text(client: &mut RawClient) -> String {
    client.expect_text()
}

#[test]
fn a_message_for_a_uid_on_another_node_reaches_every_tab_once() {
    let redis = RedisServer::start();
    let (one, two) = (node(&redis), node(&redis));
    let mut alice = RawClient::login(one.addr, "alice");
    let mut bob_here = RawClient::login(one.addr, "bob");
    let mut bob_there = RawClient::login(two.addr, "bob");
    alice.send_text("bob:first");
    alice.send_text("bob:second");
    for tab in [&mut bob_here, &mut bob_there] {
        // In order, and the first only once: the origin node skips its own echo.
        assert_eq!(next_text(tab), "first");
        assert_eq!(next_text(tab), "second");
    }
    bob_there.send_text("alice:back");
    assert_eq!(next_text(&mut alice), "back");
}

#[test]
fn a_push_right_after_login_reaches_a_user_on_another_node() {
    let redis = RedisServer::start();
    let (one, two) = (node(&redis), node(&redis));
    let mut alice = RawClient::login(one.addr, "alice");
    for round in 0..20 {
        // "login success" is sent only once node two's subscription to the uid is confirmed.
        let uid = format!("late{round}");
        let mut late = RawClient::login(two.addr, &uid);
        alice.send_text(&format!("{uid}:welcome {round}"));
        assert_eq!(next_text(&mut late), format!("welcome {round}"));
    }
}

#[test]
fn broadcasts_and_api_pushes_reach_every_node() {
    let redis = RedisServer::start();
    let (one, two) = (node(&redis), node(&redis));
    let mut alice = RawClient::login(one.addr, "alice");
    let mut bob = RawClient::login(two.addr, "bob");
    let mut carol = RawClient::login(two.addr, "carol");
    alice.send_text("all:hello everyone");
    for client in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(next_text(client), "hello everyone");
    }
    let mut api = Http::connect(one.api.unwrap());
    let response = api
        .request("POST /send/bob HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 8\r\n\r\nvia api1");
    assert_eq!(response.status(), 200, "{}", response.text());
    assert_eq!(next_text(&mut bob), "via api1");
    let response = api
        .request("POST /broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 6\r\n\r\nto all");
    assert_eq!(response.status(), 200, "{}", response.text());
    for client in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(next_text(client), "to all");
    }
}

#[test]
fn a_program_outside_the_cluster_publishes_with_the_envelope_and_bad_data_is_skipped() {
    let redis = RedisServer::start();
    let one = node(&redis);
    let mut bob = RawClient::login(one.addr, "bob");
    // Version 1, kind 1 (text), origin 0 (not a node), then the message.
    let envelope = "\u{1}\u{1}\0\0\0\0\0\0\0\0from a backend";
    for garbage in [
        "",
        "\u{1}",
        "\u{2}\u{1}\0\0\0\0\0\0\0\0wrong version",
        "\u{1}\u{9}\0\0\0\0\0\0\0\0?",
    ] {
        let reply = redis
            .command(&["PUBLISH", "wspush:u:bob", garbage])
            .unwrap();
        assert_eq!(reply, ":1\r\n", "one node holds bob");
    }
    redis
        .command(&["PUBLISH", "wspush:u:bob", envelope])
        .unwrap();
    assert_eq!(
        next_text(&mut bob),
        "from a backend",
        "the bad ones were skipped"
    );
    redis.command(&["PUBLISH", "wspush:all", envelope]).unwrap();
    assert_eq!(next_text(&mut bob), "from a backend");
}

#[test]
fn a_uid_is_unsubscribed_after_its_last_connection_and_the_linger() {
    let redis = RedisServer::start();
    let one = node(&redis);
    let numsub = |uid: &str| {
        let reply = redis
            .command(&["PUBSUB", "NUMSUB", &format!("wspush:u:{uid}")])
            .unwrap();
        reply.trim_end().rsplit(':').next().unwrap().to_owned()
    };
    let bob = RawClient::login(one.addr, "bob");
    assert_eq!(numsub("bob"), "1", "subscribed before login success");
    drop(bob);
    wait_until("still subscribed to bob", || numsub("bob") == "0");
}

/// What `/health` of `server` says of the cluster.
fn cluster_health(server: &BinaryServer) -> String {
    let mut api = Http::connect(server.api.unwrap());
    let response = api.request("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(response.status(), 200, "a node without Redis still serves");
    response.json()["cluster"].as_str().unwrap().to_owned()
}

/// Waits until `/health` of every node says `state`.
fn wait_for_health(nodes: &[&BinaryServer], state: &str) {
    let what = format!("the cluster did not become {state}");
    for node in nodes {
        wait_until(&what, || cluster_health(node) == state);
    }
}

#[test]
fn redis_killed_and_restarted_mid_traffic_local_delivery_goes_on_then_the_cluster_comes_back() {
    let mut redis = RedisServer::start();
    let (one, two) = (node(&redis), node(&redis));
    let mut alice = RawClient::login(one.addr, "alice");
    let mut alice_too = RawClient::login(one.addr, "alice2");
    let mut bob = RawClient::login(two.addr, "bob");
    alice.send_text("bob:before");
    assert_eq!(next_text(&mut bob), "before");
    wait_for_health(&[&one, &two], "up");

    redis.kill();
    wait_for_health(&[&one, &two], "degraded");
    // This node's own users are still served.
    alice.send_text("alice2:during");
    assert_eq!(next_text(&mut alice_too), "during");

    redis.restart();
    // "up" only once every local uid is subscribed again.
    wait_for_health(&[&one, &two], "up");
    alice.send_text("bob:after");
    assert_eq!(next_text(&mut bob), "after");
    bob.send_text("alice:back");
    assert_eq!(next_text(&mut alice), "back");
}

#[test]
fn a_node_whose_subscription_is_killed_subscribes_again() {
    let redis = RedisServer::start();
    let (one, two) = (node(&redis), node(&redis));
    let mut alice = RawClient::login(one.addr, "alice");
    let mut bob = RawClient::login(two.addr, "bob");
    let reply = redis
        .command(&["CLIENT", "KILL", "TYPE", "pubsub"])
        .unwrap();
    assert!(
        reply.starts_with(":2"),
        "both subscription links killed: {reply}"
    );
    wait_for_health(&[&one, &two], "up");
    alice.send_text("bob:still here");
    assert_eq!(next_text(&mut bob), "still here");
}

#[test]
fn the_sender_hears_offline_only_when_no_node_holds_the_uid() {
    let redis = RedisServer::start();
    let (one, two) = (node(&redis), node(&redis));
    let mut alice = RawClient::login(one.addr, "alice");
    let mut bob = RawClient::login(two.addr, "bob");
    alice.send_text("bob:are you there");
    alice.send_text("nobody:hello?");
    assert_eq!(next_text(&mut bob), "are you there");
    // The first reached bob on node two: no reply for it; the second reached nobody.
    assert_eq!(next_text(&mut alice), "error: uid nobody is offline");
}

/// The supervisor of `--workers n` on `redis`, once every worker joined the cluster; and the
/// workers' pids, from its log.
fn workers(redis: &RedisServer, n: usize) -> (BinaryServer, Vec<u32>) {
    let server = BinaryServer::start(&[
        "--workers",
        &n.to_string(),
        "--redis",
        &redis.url(),
        "--ping-interval",
        "off",
        "--idle-timeout",
        "off",
    ]);
    let (mut pids, mut up) = (Vec::new(), 0);
    let deadline = Instant::now() + WAIT;
    while pids.len() < n || up < n {
        let line = server
            .log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the workers did not all join the cluster");
        if let Some(pid) = line.split("started (pid ").nth(1) {
            pids.push(pid.trim_end_matches(')').parse().unwrap());
        }
        if line.contains("cluster: up") {
            up += 1;
        }
    }
    (server, pids)
}

/// Open descriptors of process `pid`.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

#[test]
fn workers_share_one_port_and_their_users_and_a_dead_worker_is_restarted() {
    let redis = RedisServer::start();
    let (server, pids) = workers(&redis, 3);
    let before: Vec<usize> = pids.iter().map(|&pid| open_files(pid)).collect();
    let mut clients: Vec<RawClient> = (0..60)
        .map(|i| RawClient::login(server.addr, &format!("u{i}")))
        .collect();
    let serving = pids
        .iter()
        .zip(&before)
        .filter(|(&pid, &fds)| open_files(pid) > fds)
        .count();
    assert!(
        serving >= 2,
        "the kernel spread 60 connections over {serving} of 3 workers"
    );
    // Everyone reaches everyone, wherever the kernel put them.
    for i in 0..60 {
        let to = (i + 17) % 60;
        clients[i].send_text(&format!("u{to}:from {i}"));
        assert_eq!(next_text(&mut clients[to]), format!("from {i}"));
    }

    // A worker killed with SIGKILL loses its own connections only, and is started again.
    let victim = pids[1];
    std::process::Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let line = server
            .log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the dead worker was not restarted");
        if line.contains("worker 1 started") {
            break;
        }
    }
    let mut alive: Vec<usize> = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send_text(&format!("u{i}:ping"));
        if client
            .try_read_frame()
            .is_some_and(|frame| frame.payload == b"ping")
        {
            alive.push(i);
        }
    }
    assert!(
        alive.len() >= 20,
        "only {} of 60 clients survived",
        alive.len()
    );
    assert!(alive.len() < 60, "the killed worker held nobody");
    let (a, b) = (alive[0], alive[alive.len() - 1]);
    clients[a].send_text(&format!("u{b}:still connected"));
    assert_eq!(next_text(&mut clients[b]), "still connected");
}

#[test]
fn a_subscription_that_silently_stops_is_found_by_the_probe_and_repaired() {
    let redis = RedisServer::start();
    let proxy = common::redis::SilentProxy::start(redis.port);
    let one = node(&redis);
    // Node two reaches Redis through the proxy, probing every 200 ms.
    let two = BinaryServer::start(&[
        "--redis",
        &proxy.url(),
        "--cluster-probe-interval",
        "200ms",
        "--ping-interval",
        "off",
        "--idle-timeout",
        "off",
    ]);
    wait_for_health(&[&two], "up");
    let mut alice = RawClient::login(one.addr, "alice");
    let mut bob = RawClient::login(two.addr, "bob");
    alice.send_text("bob:before");
    assert_eq!(next_text(&mut bob), "before");

    proxy.silence_current();
    // Node two notices that both links went silent (its probe does not come back, Redis
    // answers no command), reconnects them, and subscribes bob again.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut api = Http::connect(two.api.unwrap());
        let stats = api
            .request("GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .json();
        let repaired = stats["cluster"]["stale_repairs"].as_u64().unwrap() >= 2;
        if repaired && stats["cluster"]["up"] == true {
            // Nothing spun meanwhile: the loop woke up about as often as it was polled.
            let wakeups = stats["io"]["wakeups"].as_u64().unwrap();
            assert!(wakeups < 5_000, "{wakeups} loop iterations: a busy loop");
            break;
        }
        assert!(Instant::now() < deadline, "not repaired: {stats}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    alice.send_text("bob:after");
    assert_eq!(next_text(&mut bob), "after");
}

/// An API request with `body`.
fn request(method: &str, path: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// `request` on `api`, as JSON (status 200 asserted).
fn api_json(api: std::net::SocketAddr, request: &str) -> serde_json::Value {
    let mut http = Http::connect(api);
    let response = http.request(request);
    assert_eq!(response.status(), 200, "{}", response.text());
    response.json()
}

#[test]
fn delivery_reports_presence_and_kicks_count_every_node() {
    let redis = RedisServer::start();
    let (one, two) = (node(&redis), node(&redis));
    let api = one.api.unwrap();
    let mut tabs = [
        RawClient::login(one.addr, "bob"),
        RawClient::login(two.addr, "bob"),
        RawClient::login(two.addr, "bob"),
    ];
    let send = "POST /send/bob HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nhi";
    let report = api_json(api, send);
    assert_eq!(
        report,
        serde_json::json!({"connections": 3, "nodes": 2, "partial": false}),
        "every tab on every node counted"
    );
    for tab in &mut tabs {
        assert_eq!(next_text(tab), "hi");
    }
    let nobody = "POST /send/nobody HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nhi";
    assert_eq!(
        api_json(api, nobody),
        serde_json::json!({"connections": 0, "nodes": 0, "partial": false})
    );
    let presence = api_json(api, "GET /uids/bob HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(presence["connections"], 3);
    assert_eq!(presence["online"], true);
    assert_eq!(presence["nodes"], 2);

    let kick = "POST /uids/bob/close HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(api_json(api, kick)["connections"], 3);
    for tab in &mut tabs {
        assert_eq!(tab.expect_close().0, Some(1000));
    }
}

#[test]
fn a_report_from_a_node_that_does_not_answer_says_partial() {
    let redis = RedisServer::start();
    let (one, two) = (node(&redis), node(&redis));
    let _bob_here = RawClient::login(one.addr, "bob");
    let _bob_there = RawClient::login(two.addr, "bob");
    two.signal(libc::SIGSTOP);
    let send = "POST /send/bob HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nhi";
    let report = api_json(one.api.unwrap(), send);
    two.signal(libc::SIGCONT);
    assert_eq!(
        report,
        serde_json::json!({"connections": 1, "nodes": 2, "partial": true}),
        "node two holds bob but did not answer in time"
    );
}

#[test]
fn uid_channels_spread_over_two_redis_servers_and_one_failing_spares_the_others() {
    let (first, mut second) = (RedisServer::start(), RedisServer::start());
    let start = || {
        let server = BinaryServer::start(&[
            "--redis",
            &first.url(),
            "--redis",
            &second.url(),
            "--ping-interval",
            "off",
            "--idle-timeout",
            "off",
        ]);
        wait_for_health(&[&server], "up");
        server
    };
    let (one, two) = (start(), start());
    let mut alice = RawClient::login(one.addr, "alice");
    let uids: Vec<String> = (0..20).map(|i| format!("user{i}")).collect();
    let mut users: Vec<RawClient> = uids
        .iter()
        .map(|uid| RawClient::login(two.addr, uid))
        .collect();
    let subscribed_on = |redis: &RedisServer, uid: &str| {
        let reply = redis
            .command(&["PUBSUB", "NUMSUB", &format!("wspush:u:{uid}")])
            .unwrap();
        reply.trim_end().ends_with(":1")
    };
    let on_first: Vec<bool> = uids.iter().map(|uid| subscribed_on(&first, uid)).collect();
    for (uid, &first_has) in uids.iter().zip(&on_first) {
        assert_ne!(
            first_has,
            subscribed_on(&second, uid),
            "{uid} on exactly one server"
        );
    }
    let spread = on_first.iter().filter(|&&on| on).count();
    assert!(
        (1..20).contains(&spread),
        "{spread} of 20 uids on the first server"
    );
    for (uid, user) in uids.iter().zip(&mut users) {
        alice.send_text(&format!("{uid}:hello {uid}"));
        assert_eq!(next_text(user), format!("hello {uid}"));
    }

    // The second server fails: uids whose channels live on the first are still reached.
    second.kill();
    wait_for_health(&[&one, &two], "degraded");
    for ((uid, user), &first_has) in uids.iter().zip(&mut users).zip(&on_first) {
        if first_has {
            alice.send_text(&format!("{uid}:still {uid}"));
            assert_eq!(next_text(user), format!("still {uid}"));
        }
    }
    alice.send_text("all:broadcasts ride on the first server");
    assert_eq!(
        next_text(&mut users[0]),
        "broadcasts ride on the first server"
    );
}

#[test]
fn surveyed_api_requests_are_answered_in_order_even_pipelined_or_half_closed() {
    let redis = RedisServer::start();
    let (one, two) = (node(&redis), node(&redis));
    let _bob = RawClient::login(two.addr, "bob");
    let send = |uid: &str| {
        format!("POST /send/{uid} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nhi")
    };
    // Two surveyed requests and a plain one, pipelined, then the client's FIN.
    let mut api = Http::connect(one.api.unwrap());
    api.send(format!(
        "{}{}GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        send("bob"),
        send("nobody")
    ));
    api.finish_sending();
    let first = api.read_response().json();
    assert_eq!(first["connections"], 1);
    assert_eq!(first["nodes"], 1);
    let second = api.read_response().json();
    assert_eq!(second["connections"], 0);
    assert_eq!(api.read_response().json()["status"], "ok");
}

#[test]
fn groups_hold_on_every_node_and_survive_a_node_restart() {
    let redis = RedisServer::start();
    let one = node(&redis);
    let mut two = node(&redis);
    let api = one.api.unwrap();
    let mut alice = RawClient::login(one.addr, "alice");
    let mut bob = RawClient::login(two.addr, "bob");
    // Memberships set through node one, for a uid on each node.
    for uid in ["alice", "bob"] {
        api_json(
            api,
            &request("PUT", &format!("/groups/team/members/{uid}"), ""),
        );
    }
    // Node two hears of bob's membership through bob's channel, then follows the group.
    let both_follow = || {
        redis
            .command(&["PUBSUB", "NUMSUB", "wspush:g:team"])
            .unwrap()
            .trim_end()
            .ends_with(":2")
    };
    wait_until("node two never followed the group", both_follow);
    api_json(api, &request("POST", "/groups/team/send", "to the team"));
    assert_eq!(next_text(&mut alice), "to the team");
    assert_eq!(next_text(&mut bob), "to the team");
    api_json(
        api,
        &request("POST", "/groups/team/send?exclude=alice", "not alice"),
    );
    assert_eq!(next_text(&mut bob), "not alice");

    // Node two restarts: its memory of groups is gone, Redis's is not.
    drop(bob);
    two.child.kill().unwrap();
    two.child.wait().unwrap();
    let two = node(&redis);
    let mut bob = RawClient::login(two.addr, "bob");
    wait_until("bob's groups were not loaded from Redis", both_follow);
    alice.send_text("bob:ping");
    assert_eq!(next_text(&mut bob), "ping");
    api_json(
        api,
        &request("POST", "/groups/team/send", "after the restart"),
    );
    assert_eq!(next_text(&mut alice), "after the restart");
    assert_eq!(next_text(&mut bob), "after the restart");

    // Deleted on node one: gone on every node and in Redis (which hears of it right after
    // the API's answer went out).
    api_json(api, &request("DELETE", "/groups/team", ""));
    wait_until("the group was not deleted in Redis", || {
        redis.command(&["EXISTS", "wspush:gm:team"]).unwrap() == ":0\r\n"
            && redis.command(&["SCARD", "wspush:ug:bob"]).unwrap() == ":0\r\n"
    });
    api_json(api, &request("POST", "/groups/team/send", "nobody"));
    alice.send_text("bob:after the delete");
    assert_eq!(
        next_text(&mut bob),
        "after the delete",
        "no group message before it"
    );
}

#[test]
fn a_uid_keeps_its_groups_for_the_grace_period_after_its_last_connection_anywhere() {
    let redis = RedisServer::start();
    let start = || {
        let server = BinaryServer::start(&[
            "--redis",
            &redis.url(),
            "--group-grace",
            "1s",
            "--ping-interval",
            "off",
            "--idle-timeout",
            "off",
        ]);
        wait_for_health(&[&server], "up");
        server
    };
    let (one, two) = (start(), start());
    let api = one.api.unwrap();
    let join =
        "PUT /groups/team/members/bob HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n";
    let mut bob_here = RawClient::login(one.addr, "bob");
    let bob_there = RawClient::login(two.addr, "bob");
    api_json(api, join);
    let exists = || redis.command(&["EXISTS", "wspush:ug:bob"]).unwrap();
    // Online on two nodes: one of them closing starts no grace period.
    drop(bob_there);
    let ttl = || redis.command(&["TTL", "wspush:ug:bob"]).unwrap();
    wait_until("node two never counted bob offline", || {
        redis.command(&["SCARD", "wspush:uo:bob"]).unwrap() == ":1\r\n"
    });
    assert_eq!(ttl(), ":-1\r\n", "no expiry while bob is online somewhere");
    // Offline everywhere: the groups go once the grace period has passed.
    bob_here.send_text("bob:last words");
    assert_eq!(next_text(&mut bob_here), "last words");
    drop(bob_here);
    let deadline = Instant::now() + WAIT;
    while exists() != ":0\r\n" {
        assert!(
            Instant::now() < deadline,
            "bob's groups never expired: ttl {}",
            ttl()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut bob = RawClient::login(two.addr, "bob");
    let mut alice = RawClient::login(one.addr, "alice");
    let send =
        "POST /groups/team/send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n\r\nteam";
    api_json(api, send);
    alice.send_text("bob:marker");
    assert_eq!(
        next_text(&mut bob),
        "marker",
        "bob is no longer in the group"
    );
}

#[test]
fn a_node_shut_down_with_sigterm_counts_its_last_uids_offline_in_redis() {
    let redis = RedisServer::start();
    let mut one = cluster_node(
        &redis.url(),
        &["--shutdown-timeout", "60s", "--close-timeout", "60s"],
    );
    let mut bob = RawClient::login(one.addr, "bob");
    let holders = || redis.command(&["SCARD", "wspush:uo:bob"]).unwrap();
    assert_eq!(holders(), ":1\r\n", "counted online before login success");
    one.signal(libc::SIGTERM);
    assert_eq!(bob.expect_close().0, Some(1001));
    bob.send_frame(true, CLOSE, &close_payload(1001, ""));
    bob.expect_eof();
    drop(bob);
    // Bob's connection is the node's last: it goes in the drain's last flush, and its
    // offline mark still reaches Redis before the node exits.
    assert_eq!(one.wait_exit(), Some(0));
    wait_until("bob still counted online after the node exited", || {
        holders() == ":0\r\n"
    });
}

#[test]
fn a_node_killed_with_sigkill_stops_counting_and_the_others_go_on() {
    let redis = RedisServer::start();
    let (one, mut two) = (node(&redis), node(&redis));
    let mut alice = RawClient::login(one.addr, "alice");
    let mut carol = RawClient::login(one.addr, "carol");
    let _bob = RawClient::login(two.addr, "bob");
    let presence = |uid: &str| {
        api_json(
            one.api.unwrap(),
            &format!("GET /uids/{uid} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
        )
    };
    assert_eq!(presence("bob")["connections"], 1);
    two.child.kill().unwrap();
    two.child.wait().unwrap();
    // Redis drops node two's subscriptions with its connection: bob is offline at once.
    let deadline = Instant::now() + WAIT;
    while presence("bob")["online"] != false {
        assert!(
            Instant::now() < deadline,
            "bob still online: {}",
            presence("bob")
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    alice.send_text("bob:are you there");
    assert_eq!(next_text(&mut alice), "error: uid bob is offline");
    alice.send_text("carol:still here");
    assert_eq!(next_text(&mut carol), "still here");
}

#[test]
fn a_group_message_right_after_login_reaches_a_member_on_another_node() {
    let redis = RedisServer::start();
    let (one, two) = (node(&redis), node(&redis));
    let api = one.api.unwrap();
    for round in 0..10 {
        // Added while offline (Redis keeps it), then the uid's first login, on node two.
        let (uid, group) = (format!("late{round}"), format!("club{round}"));
        api_json(
            api,
            &request("PUT", &format!("/groups/{group}/members/{uid}"), ""),
        );
        let mut member = RawClient::login(two.addr, &uid);
        // "login success" came once node two had loaded the groups and followed the group.
        api_json(
            api,
            &request("POST", &format!("/groups/{group}/send"), "welcome"),
        );
        assert_eq!(next_text(&mut member), "welcome", "round {round}");
    }
}
