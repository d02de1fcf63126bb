//! `/stats` and `/metrics`: the same counters and gauges as JSON and in the Prometheus text
//! exposition format (version 0.0.4).

use std::fmt::Write;

use serde_json::{json, Map, Value};

use crate::{Gauges, Stats};

/// The `/stats` document.
pub(crate) fn stats_json(stats: &Stats, gauges: &Gauges) -> Value {
    let by_key = |counts: &std::collections::BTreeMap<u16, u64>| {
        counts
            .iter()
            .map(|(key, count)| (key.to_string(), json!(count)))
            .collect::<Map<String, Value>>()
    };
    json!({
        "uptime_seconds": gauges.uptime.as_secs_f64(),
        "connections": {
            "open": gauges.open,
            "bound": gauges.bound,
            "handshaking": gauges.handshaking,
            "closing": gauges.closing,
            "accepted_total": stats.accepted,
        },
        "uids_online": gauges.uids_online,
        "groups": gauges.groups,
        "queued_bytes": gauges.queued_bytes,
        "messages": {
            "in": stats.messages_in,
            "out": stats.messages_out,
            "dropped": stats.dropped_messages,
            "rate_limited_clients": stats.rate_limited,
        },
        "bytes": { "in": stats.bytes_in, "out": stats.bytes_out },
        "io": {
            "wakeups": stats.wakeups,
            "socket_reads": stats.socket_reads,
            "socket_writes": stats.socket_writes,
        },
        "tls": {
            "full_handshakes": stats.tls.full_handshakes,
            "resumed_handshakes": stats.tls.resumed_handshakes,
            "errors": stats.tls.errors,
            "reloads": stats.tls.reloads,
            "failed_reloads": stats.tls.failed_reloads,
        },
        "closes_by_code": by_key(&stats.closes),
        "handshake_failures_by_status": by_key(&stats.handshake_failures),
        "api_requests_by_status": by_key(&stats.api_requests),
        "cluster": stats.cluster.map(|cluster| json!({
            "up": cluster.up,
            "published": cluster.published,
            "received": cluster.received,
            "lost": cluster.lost,
            "bad": cluster.bad,
            "link_failures": cluster.link_failures,
            "stale_repairs": cluster.stale_repairs,
        })),
    })
}

/// The `/metrics` page.
pub(crate) fn prometheus(stats: &Stats, gauges: &Gauges) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP wspush_{name} {help}");
        let _ = writeln!(out, "# TYPE wspush_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "wspush_{name}{labels} {value}");
        }
    };
    let one = |value: f64| [(String::new(), value)];
    let labelled = |label: &str, counts: &std::collections::BTreeMap<u16, u64>| {
        counts
            .iter()
            .map(|(key, count)| (format!("{{{label}=\"{key}\"}}"), *count as f64))
            .collect::<Vec<_>>()
    };
    let states = [
        ("open", gauges.open),
        ("handshaking", gauges.handshaking),
        ("closing", gauges.closing),
    ]
    .map(|(state, n)| (format!("{{state=\"{state}\"}}"), n as f64));
    metric("connections", "gauge", "Connections by state.", &states);
    metric(
        "bound_connections",
        "gauge",
        "Open connections bound to a uid.",
        &one(gauges.bound as f64),
    );
    metric(
        "uids_online",
        "gauge",
        "Uids with at least one connection.",
        &one(gauges.uids_online as f64),
    );
    metric(
        "groups",
        "gauge",
        "Groups with at least one member.",
        &one(gauges.groups as f64),
    );
    metric(
        "queued_bytes",
        "gauge",
        "What every send queue holds, bytes plus a per-frame overhead.",
        &one(gauges.queued_bytes as f64),
    );
    metric(
        "uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        &one(gauges.uptime.as_secs_f64()),
    );
    metric(
        "connections_accepted_total",
        "counter",
        "TCP connections accepted.",
        &one(stats.accepted as f64),
    );
    metric(
        "messages_received_total",
        "counter",
        "Data messages received from clients.",
        &one(stats.messages_in as f64),
    );
    metric(
        "messages_sent_total",
        "counter",
        "Data messages queued to connections.",
        &one(stats.messages_out as f64),
    );
    metric(
        "messages_dropped_total",
        "counter",
        "Messages dropped for slow consumers.",
        &one(stats.dropped_messages as f64),
    );
    metric(
        "clients_rate_limited_total",
        "counter",
        "Clients closed for sending faster than the client rate.",
        &one(stats.rate_limited as f64),
    );
    metric(
        "tls_handshakes_total",
        "counter",
        "TLS handshakes completed, by kind (full, resumed).",
        &[
            (
                "{kind=\"full\"}".to_owned(),
                stats.tls.full_handshakes as f64,
            ),
            (
                "{kind=\"resumed\"}".to_owned(),
                stats.tls.resumed_handshakes as f64,
            ),
        ],
    );
    metric(
        "tls_errors_total",
        "counter",
        "TLS sessions that failed (bad client hello, plain HTTP, bad records, alerts).",
        &one(stats.tls.errors as f64),
    );
    metric(
        "tls_reloads_total",
        "counter",
        "Certificate reloads, by result.",
        &[
            ("{result=\"ok\"}".to_owned(), stats.tls.reloads as f64),
            (
                "{result=\"failed\"}".to_owned(),
                stats.tls.failed_reloads as f64,
            ),
        ],
    );
    metric(
        "bytes_received_total",
        "counter",
        "Bytes read from WebSocket connections.",
        &one(stats.bytes_in as f64),
    );
    metric(
        "bytes_sent_total",
        "counter",
        "Bytes written to WebSocket connections.",
        &one(stats.bytes_out as f64),
    );
    metric(
        "closes_total",
        "counter",
        "Closed connections by close code.",
        &labelled("code", &stats.closes),
    );
    metric(
        "handshake_failures_total",
        "counter",
        "Refused handshakes by HTTP status.",
        &labelled("status", &stats.handshake_failures),
    );
    metric(
        "api_requests_total",
        "counter",
        "Push API requests by HTTP status.",
        &labelled("status", &stats.api_requests),
    );
    if let Some(cluster) = stats.cluster {
        metric(
            "cluster_up",
            "gauge",
            "1 while both links to Redis are up and subscribed.",
            &one(f64::from(u8::from(cluster.up))),
        );
        for (name, help, value) in [
            (
                "cluster_published_total",
                "Messages published to other nodes.",
                cluster.published,
            ),
            (
                "cluster_received_total",
                "Messages from the bus delivered here.",
                cluster.received,
            ),
            (
                "cluster_lost_total",
                "Messages not published: Redis unreachable.",
                cluster.lost,
            ),
            (
                "cluster_bad_total",
                "Malformed bus messages skipped.",
                cluster.bad,
            ),
            (
                "cluster_stale_repairs_total",
                "Silent subscriptions found by a probe and reconnected.",
                cluster.stale_repairs,
            ),
            (
                "cluster_link_failures_total",
                "Links to Redis that went down.",
                cluster.link_failures,
            ),
        ] {
            metric(name, "counter", help, &one(value as f64));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_help_type_and_labels() {
        let mut stats = Stats::default();
        stats.closes.insert(1000, 3);
        let gauges = Gauges {
            open: 2,
            ..Gauges::default()
        };
        let text = prometheus(&stats, &gauges);
        assert!(text.contains("# TYPE wspush_connections gauge\n"));
        assert!(text.contains("wspush_connections{state=\"open\"} 2\n"));
        assert!(text.contains("wspush_closes_total{code=\"1000\"} 3\n"));
        assert_eq!(stats_json(&stats, &gauges)["closes_by_code"]["1000"], 3);
    }
}
