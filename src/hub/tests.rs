//! The hub's state machine, timers, backpressure and fan-out, driven directly: no sockets (the
//! transport is `()`), and the clock is whatever `now` the test passes.

use std::time::Duration;

use super::conn::{State, BLOCKED, READ_PAUSED};
use super::outbox::FRAME_OVERHEAD;
use super::*;

const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9);

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn hub(config: Config) -> Hub<()> {
    Hub::new(config, 100)
}

/// Timers off, so that only what a test turns on fires.
fn quiet() -> Config {
    Config::timers_off()
}

/// An open connection at `now`.
fn open_conn(hub: &mut Hub<()>, now: Duration) -> ConnId {
    let key = hub.insert((), PEER, false, now);
    hub.open(key, now);
    hub.id_of(key)
}

/// What is queued for `id`, as bytes, emptying its queue.
fn take_output(hub: &mut Hub<()>, id: ConnId) -> Vec<u8> {
    let mut out = Vec::new();
    hub.conns[id.key()].outbox.write_to(&mut out).unwrap();
    out
}

#[test]
fn open_then_server_close_lists_one_close_and_unbinds() {
    let mut hub = hub(quiet());
    let id = open_conn(&mut hub, ms(0));
    assert_eq!(hub.open, 1);
    assert!(hub.bind_uid(id, "alice", ms(0)));
    hub.close(id.key(), CloseCode::POLICY, "bye", ms(5));
    hub.close(id.key(), CloseCode::NORMAL, "again", ms(6));
    assert_eq!(hub.open, 0);
    assert_eq!(hub.conns[id.key()].state, State::Closing);
    assert!(hub.registry.conns("alice").is_empty());
    let [(closed, info)] = hub.closed.as_slice() else {
        panic!("one close expected: {:?}", hub.closed)
    };
    assert_eq!(
        (*closed, info.code, info.initiator),
        (id, CloseCode::POLICY, Initiator::Server)
    );
    assert_eq!(take_output(&mut hub, id), b"\x88\x05\x03\xf0bye");
    // The registry forgot the binding, but `on_close` can still ask which uid it was.
    assert_eq!(hub.uid_of(id), Some("alice"));
}

#[test]
fn peer_close_is_echoed_and_reported_as_the_clients() {
    let mut hub = hub(quiet());
    let id = open_conn(&mut hub, ms(0));
    let frame = CloseFrame {
        code: CloseCode(4000),
        reason: "done",
    };
    hub.peer_closed(id.key(), Some(frame), ms(1));
    assert_eq!(hub.closed[0].1.initiator, Initiator::Client);
    assert_eq!(hub.closed[0].1.code, CloseCode(4000));
    assert_eq!(take_output(&mut hub, id), b"\x88\x02\x0f\xa0");
}

#[test]
fn vanishing_reports_1006_once_and_marks_dead_once() {
    let mut hub = hub(quiet());
    let id = open_conn(&mut hub, ms(0));
    hub.vanish(id.key(), ms(1));
    hub.vanish(id.key(), ms(2));
    assert_eq!(hub.closed.len(), 1);
    assert_eq!(hub.closed[0].1.code, CloseCode::ABNORMAL);
    assert_eq!(hub.dead, [id.key()]);
    assert_eq!(hub.conns[id.key()].state, State::Dead);
}

#[test]
fn refusal_after_a_close_inside_on_open_reports_nothing_and_counts_once() {
    let mut hub = hub(quiet());
    let key = hub.insert((), PEER, false, ms(0));
    hub.open(key, ms(0));
    // The handler closes the connection inside `on_open`, then refuses it.
    hub.close(key, CloseCode(4001), "banned", ms(0));
    hub.unopen(key, ms(0));
    hub.reject(key, 403, "no", ms(0));
    assert_eq!((hub.open, hub.stats.opened), (0, 0));
    assert!(hub.closed.is_empty(), "{:?}", hub.closed);
    assert!(hub.stats.closes.is_empty());
    let id = hub.id_of(key);
    assert!(take_output(&mut hub, id).starts_with(b"HTTP/1.1 403 Forbidden\r\n"));
}

#[test]
fn a_reused_slot_gets_a_new_generation() {
    let mut hub = hub(quiet());
    let old = open_conn(&mut hub, ms(0));
    hub.vanish(old.key(), ms(1));
    hub.dead.clear();
    assert!(hub.remove(old.key()).is_some());
    let new = open_conn(&mut hub, ms(2));
    assert_eq!(new.key(), old.key());
    assert_ne!(new, old);
    assert_eq!(hub.key_of(old), None);
    assert_eq!(
        hub.send(old, Message::Text("stale"), ms(3)),
        SendStatus::Dropped
    );
    assert!(hub.conns[new.key()].outbox.is_empty());
}

#[test]
fn over_the_limit_a_connection_only_gets_503() {
    let mut hub = hub(quiet());
    let key = hub.insert((), PEER, true, ms(0));
    assert_eq!((hub.held_count(), hub.overflow_count()), (0, 1));
    assert_eq!(hub.conns[key].state, State::Closing);
    let id = hub.id_of(key);
    assert!(take_output(&mut hub, id).starts_with(b"HTTP/1.1 503 "));
    hub.kill(key);
    hub.remove(key);
    assert_eq!(hub.overflow_count(), 0);
}

#[test]
fn sends_report_sent_queued_or_dropped() {
    let mut hub = hub(quiet());
    let id = open_conn(&mut hub, ms(0));
    assert_eq!(hub.send(id, Message::Text("a"), ms(0)), SendStatus::Sent);
    assert_eq!(hub.dirty, [id.key()]);
    hub.conns[id.key()].set(BLOCKED);
    assert_eq!(hub.send(id, Message::Text("b"), ms(0)), SendStatus::Queued);
    assert_eq!(hub.dirty, [id.key()], "marked dirty once");
    hub.close(id.key(), CloseCode::NORMAL, "", ms(0));
    assert_eq!(hub.send(id, Message::Text("c"), ms(0)), SendStatus::Dropped);
}

#[test]
fn fan_out_counts_connections_per_uid_group_and_everyone() {
    let mut hub = hub(quiet());
    let alice_tab1 = open_conn(&mut hub, ms(0));
    let alice_tab2 = open_conn(&mut hub, ms(0));
    let bob = open_conn(&mut hub, ms(0));
    let _unbound = open_conn(&mut hub, ms(0));
    hub.bind_uid(alice_tab1, "alice", ms(0));
    hub.bind_uid(alice_tab2, "alice", ms(0));
    hub.bind_uid(bob, "bob", ms(0));
    hub.join_group("alice", "room", ms(0));
    hub.join_group("bob", "room", ms(0));
    let text = Message::Text("hi");
    assert_eq!(hub.deliver(Recipients::Uid("alice"), text, ms(0)).queued, 2);
    assert_eq!(
        hub.deliver(Recipients::Uid("nobody"), text, ms(0)).queued,
        0
    );
    let group = |exclude| Recipients::Group {
        group: "room",
        exclude,
    };
    assert_eq!(hub.deliver(group(&[]), text, ms(0)).queued, 3);
    assert_eq!(hub.deliver(group(&["alice"]), text, ms(0)).queued, 1);
    assert_eq!(hub.deliver(Recipients::All, text, ms(0)).queued, 3);
    assert_eq!(hub.stats.messages_out, 9);
    assert_eq!(take_output(&mut hub, bob), b"\x81\x02hi".repeat(3));
}

#[test]
fn a_broadcast_does_not_count_closing_connections_as_dropped() {
    let mut hub = hub(quiet());
    let alice = open_conn(&mut hub, ms(0));
    let bob = open_conn(&mut hub, ms(0));
    hub.bind_uid(alice, "alice", ms(0));
    hub.bind_uid(bob, "bob", ms(0));
    hub.close(bob.key(), CloseCode::NORMAL, "", ms(1));
    let delivery = hub.deliver(Recipients::All, Message::Text("hi"), ms(2));
    assert_eq!(
        delivery,
        Delivery {
            queued: 1,
            dropped: 0
        }
    );
}

#[test]
fn a_full_queue_drops_or_closes_by_policy() {
    for policy in [SlowConsumerPolicy::Drop, SlowConsumerPolicy::Close] {
        let mut hub = hub(Config {
            max_send_buffer: 10,
            slow_consumer: policy,
            ..quiet()
        });
        let id = open_conn(&mut hub, ms(0));
        hub.bind_uid(id, "v", ms(0));
        // An empty queue takes any message, even one larger than the cap.
        let big = hub.deliver(Recipients::Uid("v"), Message::Text("0123456789ab"), ms(0));
        assert_eq!(
            big,
            Delivery {
                queued: 1,
                dropped: 0
            }
        );
        // Dropped, and reported as dropped, not as "nobody there".
        let small = hub.deliver(Recipients::Uid("v"), Message::Text("x"), ms(0));
        assert_eq!(
            small,
            Delivery {
                queued: 0,
                dropped: 1
            }
        );
        assert_eq!(hub.stats.dropped_messages, 1);
        let expected = match policy {
            SlowConsumerPolicy::Drop => State::Open,
            SlowConsumerPolicy::Close => State::Closing,
        };
        assert_eq!(hub.conns[id.key()].state, expected, "{policy:?}");
    }
}

#[test]
fn reading_pauses_above_half_the_cap_and_resumes_at_a_quarter() {
    // Four 100-byte frames fill the cap, counted at what they hold.
    let frame_cost = 100 + FRAME_OVERHEAD;
    let mut hub = hub(Config {
        max_send_buffer: 4 * frame_cost,
        ..quiet()
    });
    let id = open_conn(&mut hub, ms(0));
    let key = id.key();
    let payload = "x".repeat(98); // 100-byte frames
    for _ in 0..2 {
        hub.send(id, Message::Text(&payload), ms(0));
    }
    assert!(
        !hub.should_pause_reading(key),
        "two frames are not over half the cap"
    );
    hub.send(id, Message::Text(&payload), ms(0));
    assert!(hub.should_pause_reading(key));
    assert!(hub.conns[key].has(READ_PAUSED));
    // Draining to two frames and then one: still paused above a quarter, resumed at it.
    let mut sink = Limited(100);
    hub.conns[key].outbox.write_to(&mut sink).unwrap();
    assert!(!hub.may_resume_reading(key));
    let mut sink = Limited(100);
    hub.conns[key].outbox.write_to(&mut sink).unwrap();
    assert!(hub.may_resume_reading(key));
    assert!(!hub.should_pause_reading(key));
}

#[test]
fn tiny_frames_are_capped_at_what_they_hold_not_at_their_bytes() {
    let mut hub = hub(Config {
        max_send_buffer: 64 << 10,
        ..quiet()
    });
    let id = open_conn(&mut hub, ms(0));
    hub.bind_uid(id, "v", ms(0));
    let mut queued = 0;
    while hub
        .deliver(Recipients::Uid("v"), Message::Text(""), ms(0))
        .queued
        == 1
    {
        queued += 1;
    }
    // 2-byte frames: without the overhead 32,768 would fit; at what they cost, 668.
    assert_eq!(queued, (64 << 10) / (2 + FRAME_OVERHEAD));
    assert!(hub.conns[id.key()].outbox.cost() <= (64 << 10) + 2 + FRAME_OVERHEAD);
}

#[test]
fn over_the_total_cap_only_empty_queues_take_messages() {
    let frame_cost = 3 + FRAME_OVERHEAD; // "x" as a text frame
    let mut hub = hub(Config {
        max_send_buffer: 100 * frame_cost,
        max_total_send_buffer: 10 * frame_cost,
        ..quiet()
    });
    let slow = open_conn(&mut hub, ms(0));
    let quick = open_conn(&mut hub, ms(0));
    hub.bind_uid(slow, "slow", ms(0));
    hub.bind_uid(quick, "quick", ms(0));
    // The total caps all queues together, whether or not a socket has refused bytes yet.
    for _ in 0..12 {
        hub.deliver(Recipients::Uid("slow"), Message::Text("x"), ms(0));
    }
    assert_eq!(hub.conns[slow.key()].outbox.frame_count(), 10);
    assert_eq!(hub.stats.dropped_messages, 2);
    // A connection whose queue is empty still gets its message: one frame per flush each.
    assert_eq!(hub.send(quick, Message::Text("x"), ms(0)), SendStatus::Sent);
    assert_eq!(
        hub.send(quick, Message::Text("x"), ms(0)),
        SendStatus::Dropped
    );
    assert_eq!(Actions::gauges(&hub, ms(0)).queued_bytes, 11 * frame_cost);
    take_output(&mut hub, quick);
    hub.release_queued(frame_cost);
    assert_eq!(Actions::gauges(&hub, ms(0)).queued_bytes, 10 * frame_cost);
}

/// A writer that takes `.0` more bytes, then would block.
struct Limited(usize);

impl std::io::Write for Limited {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0 == 0 {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.0);
        self.0 -= n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn handshake_timeout_answers_408() {
    let mut hub = hub(Config {
        handshake_timeout: ms(100),
        ..quiet()
    });
    let key = hub.insert((), PEER, false, ms(0));
    hub.sweep(ms(99));
    assert_eq!(hub.conns[key].state, State::Handshake);
    hub.sweep(ms(100));
    assert_eq!(hub.conns[key].state, State::Closing);
    let id = hub.id_of(key);
    assert!(take_output(&mut hub, id).starts_with(b"HTTP/1.1 408 Request Timeout\r\n"));
}

#[test]
fn silent_connection_is_pinged_then_closed_as_idle() {
    let mut hub = hub(Config {
        ping_interval: Some(ms(100)),
        idle_timeout: Some(ms(450)),
        ..quiet()
    });
    let id = open_conn(&mut hub, ms(0));
    hub.sweep(ms(99));
    assert!(hub.conns[id.key()].outbox.is_empty());
    hub.sweep(ms(100));
    assert_eq!(take_output(&mut hub, id), b"\x89\x00");
    // The next ping waits a whole interval after the last one.
    hub.sweep(ms(150));
    assert!(hub.conns[id.key()].outbox.is_empty());
    hub.sweep(ms(200));
    assert_eq!(take_output(&mut hub, id), b"\x89\x00");
    hub.sweep(ms(450));
    assert_eq!(hub.closed[0].1.code, CloseCode::GOING_AWAY);
    assert_eq!(take_output(&mut hub, id), b"\x88\x0e\x03\xe9idle timeout");
}

#[test]
fn any_inbound_bytes_count_as_life() {
    let mut hub = hub(Config {
        ping_interval: Some(ms(100)),
        idle_timeout: Some(ms(300)),
        ..quiet()
    });
    let id = open_conn(&mut hub, ms(0));
    for t in (50..2_000).step_by(50) {
        hub.record_read(id.key(), 6, ms(t));
        hub.sweep(ms(t + 40));
    }
    assert_eq!(hub.conns[id.key()].state, State::Open);
    assert!(
        hub.conns[id.key()].outbox.is_empty(),
        "never silent long enough for a ping"
    );
}

#[test]
fn login_timeout_closes_only_connections_without_a_uid() {
    let mut hub = hub(Config {
        login_timeout: Some(ms(300)),
        ..quiet()
    });
    let bound = open_conn(&mut hub, ms(0));
    let unbound = open_conn(&mut hub, ms(0));
    hub.bind_uid(bound, "alice", ms(10));
    // Traffic does not extend the login deadline.
    hub.record_read(unbound.key(), 10, ms(250));
    hub.sweep(ms(299));
    assert!(hub.closed.is_empty());
    hub.sweep(ms(300));
    assert_eq!(hub.closed.len(), 1);
    assert_eq!(hub.closed[0].0, unbound);
    assert_eq!(hub.closed[0].1.reason, "login timeout");
    assert_eq!(hub.conns[bound.key()].state, State::Open);
}

#[test]
fn closing_connections_are_dropped_after_the_close_timeout() {
    let mut hub = hub(Config {
        close_timeout: ms(200),
        ..quiet()
    });
    let id = open_conn(&mut hub, ms(0));
    hub.close(id.key(), CloseCode::NORMAL, "", ms(10));
    hub.drain(id.key(), ms(20));
    hub.sweep(ms(219));
    assert!(hub.dead.is_empty());
    hub.sweep(ms(220));
    assert_eq!(hub.dead, [id.key()]);
}

#[test]
fn timers_keep_their_meaning_across_tick_wrap_around() {
    let start = ms(u64::from(u32::MAX) - 50);
    let mut hub = hub(Config {
        ping_interval: Some(ms(100)),
        idle_timeout: None,
        ..quiet()
    });
    let id = open_conn(&mut hub, start);
    // 60 ms later the tick has wrapped: still not silent long enough.
    hub.sweep(start + ms(60));
    assert!(hub.conns[id.key()].outbox.is_empty());
    hub.sweep(start + ms(100));
    assert_eq!(take_output(&mut hub, id), b"\x89\x00");
    // One ping per interval after the wrap too, not one per sweep.
    hub.sweep(start + ms(120));
    assert!(hub.conns[id.key()].outbox.is_empty());
}

#[test]
fn group_membership_outlives_the_last_connection_by_the_grace_period() {
    let mut hub = hub(Config {
        group_grace: ms(300),
        ..quiet()
    });
    let alice = open_conn(&mut hub, ms(0));
    let bob = open_conn(&mut hub, ms(0));
    hub.bind_uid(alice, "alice", ms(0));
    hub.bind_uid(bob, "bob", ms(0));
    hub.join_group("alice", "room", ms(0));
    hub.join_group("bob", "room", ms(0));
    // Both leave at 100 ms; bob comes back within the grace period.
    hub.vanish(alice.key(), ms(100));
    hub.vanish(bob.key(), ms(100));
    let bob_again = open_conn(&mut hub, ms(350));
    hub.bind_uid(bob_again, "bob", ms(350));
    hub.sweep(ms(399));
    assert_eq!(hub.groups.members("room").count(), 2);
    hub.sweep(ms(400));
    let members: Vec<&str> = hub.groups.members("room").collect();
    assert_eq!(members, ["bob"]);
}

#[test]
fn uid_added_while_offline_gets_the_grace_period_to_connect() {
    let mut hub = hub(Config {
        group_grace: ms(300),
        ..quiet()
    });
    hub.join_group("carol", "room", ms(0));
    hub.join_group("dan", "room", ms(0));
    let carol = open_conn(&mut hub, ms(250));
    hub.bind_uid(carol, "carol", ms(250));
    hub.sweep(ms(300));
    let members: Vec<&str> = hub.groups.members("room").collect();
    assert_eq!(members, ["carol"]);
    assert_eq!(
        hub.deliver(
            Recipients::Group {
                group: "room",
                exclude: &[]
            },
            Message::Text("x"),
            ms(301)
        )
        .queued,
        1
    );
}

#[test]
fn shutdown_closes_open_connections_and_drops_handshakes() {
    let mut hub = hub(quiet());
    let open = open_conn(&mut hub, ms(0));
    let handshaking = hub.insert((), PEER, false, ms(0));
    hub.close_all(ms(1));
    assert!(Actions::is_shutting_down(&hub));
    assert_eq!(hub.conns[open.key()].state, State::Closing);
    assert_eq!(hub.closed[0].1.reason, "server shutting down");
    assert_eq!(hub.dead, [handshaking]);
}

#[test]
fn sweep_releases_send_queues_kept_from_a_burst() {
    let mut hub = hub(quiet());
    let id = open_conn(&mut hub, ms(0));
    hub.send(id, Message::Text("a"), ms(0));
    hub.send(id, Message::Text("b"), ms(0));
    take_output(&mut hub, id);
    assert!(hub.conns[id.key()].outbox.has_spare());
    hub.sweep(ms(1));
    assert!(!hub.conns[id.key()].outbox.has_spare());
}

#[test]
fn past_the_total_cap_messages_are_dropped_without_closing_anyone() {
    let frame_cost = 3 + FRAME_OVERHEAD; // "x" as a text frame
    let mut hub = hub(Config {
        max_send_buffer: 100 * frame_cost,
        max_total_send_buffer: 100 * frame_cost,
        slow_consumer: crate::SlowConsumerPolicy::Close,
        ..quiet()
    });
    let conns: Vec<ConnId> = (0..60)
        .map(|i| {
            let id = open_conn(&mut hub, ms(0));
            hub.bind_uid(id, &format!("u{i}"), ms(0));
            id
        })
        .collect();
    // Two broadcasts in one turn: the second passes the total (60 + 60 frames > 100).
    hub.deliver(Recipients::All, Message::Text("x"), ms(0));
    let second = hub.deliver(Recipients::All, Message::Text("x"), ms(0));
    assert_eq!(second.queued + second.dropped, 60);
    assert!(second.dropped > 0);
    for id in conns {
        assert_eq!(
            hub.conns[id.key()].state,
            State::Open,
            "nobody is closed for the total"
        );
    }
}

#[test]
fn a_broadcast_is_compressed_once_per_window_and_shared_and_plain_for_the_others() {
    let mut hub = hub(quiet());
    let ids: Vec<ConnId> = (0..6).map(|_| open_conn(&mut hub, ms(0))).collect();
    for (i, id) in ids.iter().enumerate() {
        hub.bind_uid(*id, &format!("u{i}"), ms(0));
    }
    // Two connections with the default window, two with 10 bits, two without deflate.
    for (i, bits) in [15, 15, 10, 10, 0, 0].into_iter().enumerate() {
        hub.conns[ids[i].key()].deflate = bits;
    }
    let text = r#"{"event":"price","symbol":"ABC","bid":101.25,"ask":101.5}"#.repeat(20);
    let delivery = hub.deliver_here(Recipients::All, Message::Text(&text), ms(1));
    assert_eq!(delivery.queued, 6);
    assert_eq!(
        hub.compressor.contexts(),
        2,
        "one compressor per window in use"
    );
    let head = |hub: &Hub<()>, i: usize| {
        let frame = hub.conns[ids[i].key()].outbox.frames().next().unwrap();
        (frame.as_ptr(), frame[0], frame.len())
    };
    let (a, b) = (head(&hub, 0), head(&hub, 1));
    assert_eq!(a, b, "the same compressed frame, shared");
    assert_eq!(a.1, 0xC1, "FIN, RSV1, text");
    assert!(
        a.2 < text.len() / 4,
        "compressed: {} of {}",
        a.2,
        text.len()
    );
    let (c, d) = (head(&hub, 2), head(&hub, 3));
    assert_eq!(c, d);
    assert_ne!(a.0, c.0, "another window, another frame");
    let (e, f) = (head(&hub, 4), head(&hub, 5));
    assert_eq!(e, f);
    assert_eq!(e.1, 0x81, "plain for those without deflate");
    assert_eq!(e.2, text.len() + 4);
    // What the compressed frame says inflates back to the message.
    let compressed = take_output(&mut hub, ids[0]);
    let header = if compressed[1] == 126 { 4 } else { 2 };
    let mut inflated = Vec::new();
    crate::protocol::deflate::Inflater::default()
        .inflate(&compressed[header..], 1 << 20, &mut inflated)
        .unwrap();
    assert_eq!(inflated, text.as_bytes());
}

#[test]
fn short_messages_and_those_compression_does_not_shrink_go_out_plain() {
    let mut hub = hub(quiet());
    let id = open_conn(&mut hub, ms(0));
    hub.conns[id.key()].deflate = 15;
    hub.send(id, Message::Text("short"), ms(1));
    assert_eq!(take_output(&mut hub, id), b"\x81\x05short");
    // Over the threshold but random: deflate would only add bytes.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let noise: Vec<u8> = (0..2000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    hub.send(id, Message::Binary(&noise), ms(1));
    let out = take_output(&mut hub, id);
    assert_eq!(out[0], 0x82, "plain binary, RSV1 clear");
    assert_eq!(&out[4..], &noise[..]);
}
