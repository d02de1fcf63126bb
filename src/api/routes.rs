//! The push API's routes. Every delivery goes through the same `Context` handlers use (encode
//! once, shared by recipients, same backpressure rules); this module only maps requests onto it
//! and answers in JSON. No I/O here.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::http::HttpRequest;
use super::report;
use crate::protocol::{CloseCode, Message};
use crate::uid::validate_uid;
use crate::{ApiConfig, Context, Delivery};

/// Most items one `/batch` request may carry: each may be a broadcast, and they all run in one
/// loop turn.
pub const MAX_BATCH_ITEMS: usize = 1000;

/// Seconds a client is told to wait (`Retry-After`) before retrying a delivery refused during a
/// shutdown.
const SHUTDOWN_RETRY_AFTER: &str = "5";

/// An answer, before HTTP encoding.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: Vec<u8>,
    /// Extra headers, such as `Allow` or `WWW-Authenticate`.
    pub(crate) headers: Vec<(&'static str, String)>,
    /// Send the head only (the answer to a HEAD request).
    pub(crate) omit_body: bool,
    /// In a cluster: the answer waits for this survey of the other nodes, then `complete`
    /// adds their counts to `body` (kept here as JSON until then).
    pub(crate) survey: Option<(u64, Value)>,
}

impl Reply {
    fn json(status: u16, value: &Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
            headers: Vec::new(),
            omit_body: false,
            survey: None,
        }
    }

    /// An answer that waits for `survey`, then carries `body` with the cluster's counts.
    fn after_survey(survey: u64, body: Value) -> Self {
        Self {
            survey: Some((survey, body)),
            ..Self::ok(Value::Null)
        }
    }

    fn ok(value: Value) -> Self {
        Self::json(200, &value)
    }

    pub(crate) fn error(status: u16, message: impl std::fmt::Display) -> Self {
        Self::json(status, &json!({ "error": message.to_string() }))
    }

    fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// The endpoints, with their decoded path parameters.
enum Endpoint<'p> {
    Send(&'p str),
    Broadcast,
    GroupSend(&'p str),
    Member(&'p str, &'p str),
    Group(&'p str),
    Batch,
    Uid(&'p str),
    Kick(&'p str),
    Stats,
    Metrics,
    Health,
    TlsReload,
}

/// Answers one request: first who may ask (browsers only from allowed origins; on a keyless
/// API only under an allowed `Host`; with a key, only with `Authorization: Bearer <key>`), then
/// the route.
pub(crate) fn handle(ctx: &mut Context<'_>, api: &ApiConfig, request: &HttpRequest) -> Reply {
    let segments = match admit(api, request) {
        Ok(segments) => segments,
        Err(refusal) => return refusal,
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let Some((_, endpoint)) = route(&segments) else {
        return Reply::error(404, format!("no route for {}", request.path()));
    };
    let method = effective_method(request);
    if let Err(refusal) = refuse_during_shutdown(ctx, &endpoint) {
        return refusal;
    }
    let result = match endpoint {
        Endpoint::Send(uid) => send(ctx, uid, request),
        Endpoint::Broadcast => {
            body_message(request).map(|message| Reply::ok(delivered(ctx.deliver_to_all(message))))
        }
        Endpoint::GroupSend(group) => group_send(ctx, group, request),
        Endpoint::Member(group, uid) => member(ctx, group, uid, method == "PUT"),
        Endpoint::Group(group) if method == "GET" => group_info(ctx, group),
        Endpoint::Group(group) => {
            check_group(group).map(|()| Reply::ok(json!({ "removed": ctx.ungroup(group) })))
        }
        Endpoint::Batch => batch(ctx, request),
        Endpoint::Uid(uid) => uid_info(ctx, uid),
        Endpoint::Kick(uid) => kick(ctx, uid, request),
        Endpoint::Stats => Ok(Reply::ok(report::stats_json(ctx.stats(), &ctx.gauges()))),
        Endpoint::Metrics => Ok(Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: report::prometheus(ctx.stats(), &ctx.gauges()).into_bytes(),
            headers: Vec::new(),
            omit_body: false,
            survey: None,
        }),
        Endpoint::TlsReload => Ok(match ctx.reload_tls() {
            Some(Ok(certificate)) => {
                Reply::ok(json!({ "reloaded": true, "certificate": certificate }))
            }
            Some(Err(error)) => Reply::json(
                422,
                &json!({ "reloaded": false, "error": error.to_string(), "kept": "the certificate in force" }),
            ),
            None => Reply::error(409, "this server has no TLS certificate (--tls-cert)"),
        }),
        Endpoint::Health if ctx.is_shutting_down() => {
            Ok(Reply::json(503, &json!({ "status": "shutting down" })))
        }
        // A node whose Redis is unreachable still serves its own connections: it says so, but
        // stays in a load balancer's pool (every node would leave it otherwise).
        Endpoint::Health => Ok(Reply::ok(match ctx.stats().cluster {
            Some(cluster) => json!({
                "status": "ok",
                "cluster": if cluster.up { "up" } else { "degraded" },
            }),
            None => json!({ "status": "ok" }),
        })),
    };
    result.unwrap_or_else(|reply| reply)
}

/// Checks a request whose head is complete, before its body is read (and before `100
/// Continue`): who may ask, whether the route exists, whether the method fits. The refusals
/// are the same as `handle` would give, sent without waiting for a body nobody will read.
pub(crate) fn precheck(
    ctx: &Context<'_>,
    api: &ApiConfig,
    head: &HttpRequest,
) -> Result<(), Reply> {
    let segments = admit(api, head)?;
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match route(&segments) {
        Some((_, endpoint)) => refuse_during_shutdown(ctx, &endpoint),
        None => Ok(()),
    }
}

/// Deliveries during a shutdown: every connection is closing, so a delivery would reach
/// nobody, and "0 connections" would read as "user offline". Say so, and when to try again
/// (another node, or this one restarted).
fn refuse_during_shutdown(ctx: &Context<'_>, endpoint: &Endpoint<'_>) -> Result<(), Reply> {
    let delivers = matches!(
        endpoint,
        Endpoint::Send(_) | Endpoint::Broadcast | Endpoint::GroupSend(_) | Endpoint::Batch
    );
    if delivers && ctx.is_shutting_down() {
        return Err(
            Reply::json(503, &json!({ "error": "shutting down; deliver elsewhere" }))
                .with_header("Retry-After", SHUTDOWN_RETRY_AFTER.to_owned()),
        );
    }
    Ok(())
}

/// Who may ask, the route and the method; on success the decoded path segments.
fn admit(api: &ApiConfig, request: &HttpRequest) -> Result<Vec<String>, Reply> {
    check_browser(api, request)?;
    if let Some(key) = api.key.as_deref() {
        if !is_authorized(request, key) {
            return Err(Reply::error(
                401,
                "missing or wrong API key (Authorization: Bearer <key>)",
            )
            .with_header("WWW-Authenticate", "Bearer".to_owned()));
        }
    }
    let segments = decode_path(request.path())?;
    let borrowed: Vec<&str> = segments.iter().map(String::as_str).collect();
    let Some((allowed, _)) = route(&borrowed) else {
        return Err(Reply::error(
            404,
            format!("no route for {}", request.path()),
        ));
    };
    if !allowed.contains(&effective_method(request)) {
        return Err(
            Reply::error(405, format!("{} is not allowed here", request.method))
                .with_header("Allow", allowed.join(", ")),
        );
    }
    Ok(segments)
}

/// The methods a path allows, and its endpoint.
fn route<'p>(segments: &[&'p str]) -> Option<(&'static [&'static str], Endpoint<'p>)> {
    Some(match *segments {
        ["send", uid] => (&["POST"], Endpoint::Send(uid)),
        ["broadcast"] => (&["POST"], Endpoint::Broadcast),
        ["groups", group, "send"] => (&["POST"], Endpoint::GroupSend(group)),
        ["groups", group, "members", uid] => (&["PUT", "DELETE"], Endpoint::Member(group, uid)),
        ["groups", group] => (&["GET", "DELETE"], Endpoint::Group(group)),
        ["batch"] => (&["POST"], Endpoint::Batch),
        ["uids", uid] => (&["GET"], Endpoint::Uid(uid)),
        ["uids", uid, "close"] => (&["POST"], Endpoint::Kick(uid)),
        ["stats"] => (&["GET"], Endpoint::Stats),
        ["metrics"] => (&["GET"], Endpoint::Metrics),
        ["health"] => (&["GET"], Endpoint::Health),
        ["tls", "reload"] => (&["POST"], Endpoint::TlsReload),
        _ => return None,
    })
}

/// HEAD is answered as GET; the connection layer leaves out the body.
fn effective_method(request: &HttpRequest) -> &str {
    match request.method.as_str() {
        "HEAD" => "GET",
        method => method,
    }
}

/// Refuses what only a browser would send, unless its origin is allowed, and on a keyless API
/// any `Host` that is not this server's (a DNS-rebinding page names its own host).
fn check_browser(api: &ApiConfig, request: &HttpRequest) -> Result<(), Reply> {
    let origin = request.header("origin").map(<[u8]>::trim_ascii);
    let cross_site = request.header("sec-fetch-site").is_some_and(|site| {
        let site = site.trim_ascii();
        site.eq_ignore_ascii_case(b"cross-site") || site.eq_ignore_ascii_case(b"same-site")
    });
    let allowed = |origin: &[u8]| {
        api.allowed_origins
            .iter()
            .any(|a| a.as_bytes().eq_ignore_ascii_case(origin))
    };
    match origin {
        Some(origin) if !allowed(origin) => {
            return Err(Reply::error(
                403,
                "requests from web pages are refused (the origin is not in --api-allowed-origins)",
            ))
        }
        None if cross_site => {
            return Err(Reply::error(
                403,
                "cross-site requests from web pages are refused",
            ))
        }
        _ => {}
    }
    if api.key.is_none() {
        if let Some(host) = request.header("host") {
            if !is_own_host(api, host) {
                return Err(Reply::error(
                    403,
                    "this API answers only to its own address (Host not in --api-allowed-hosts)",
                ));
            }
        }
    }
    Ok(())
}

/// Whether a `Host` header names this API: a loopback name or address, its own address, or a
/// configured name; any port.
fn is_own_host(api: &ApiConfig, host: &[u8]) -> bool {
    let Ok(host) = std::str::from_utf8(host.trim_ascii()) else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host.as_str(),
        },
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip == api.listen.ip())
        || api.allowed_hosts.iter().any(|allowed| allowed == name)
}

fn is_authorized(request: &HttpRequest, key: &str) -> bool {
    let Some(value) = request.header("authorization") else {
        return false;
    };
    let Some((scheme, token)) = value.trim_ascii().split_at_checked(7) else {
        return false;
    };
    scheme.eq_ignore_ascii_case(b"bearer ") && bool::from(token.ct_eq(key.as_bytes()))
}

/// Splits the path into percent-decoded segments.
fn decode_path(path: &str) -> Result<Vec<String>, Reply> {
    path.strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .map(|segment| {
            percent_decode_str(segment)
                .decode_utf8()
                .map(|decoded| decoded.into_owned())
                .map_err(|_| Reply::error(400, "path is not UTF-8 after percent-decoding"))
        })
        .collect()
}

fn check_uid(uid: &str) -> Result<(), Reply> {
    validate_uid(uid).map_err(|reason| Reply::error(400, format!("invalid uid: {reason}")))
}

fn check_group(group: &str) -> Result<(), Reply> {
    validate_uid(group).map_err(|reason| {
        let reason = reason.to_string().replacen("uid", "group name", 1);
        Reply::error(400, format!("invalid group: {reason}"))
    })
}

/// The message a body carries: binary for `application/octet-stream`; otherwise text, which
/// must be UTF-8 (without a `Content-Type`, non-UTF-8 bodies are sent as binary).
fn body_message(request: &HttpRequest) -> Result<Message<'_>, Reply> {
    let content_type = request.header("content-type").map(|value| {
        let essence = value.split(|&b| b == b';').next().unwrap_or_default();
        essence.trim_ascii().to_ascii_lowercase()
    });
    let body = request.body.as_slice();
    match (content_type.as_deref(), std::str::from_utf8(body)) {
        (Some(b"application/octet-stream"), _) => Ok(Message::Binary(body)),
        (_, Ok(text)) => Ok(Message::Text(text)),
        (None, Err(_)) => Ok(Message::Binary(body)),
        (Some(_), Err(_)) => Err(Reply::error(
            400,
            "body is not valid UTF-8; send binary as application/octet-stream",
        )),
    }
}

fn send(ctx: &mut Context<'_>, uid: &str, request: &HttpRequest) -> Result<Reply, Reply> {
    check_uid(uid)?;
    let message = body_message(request)?;
    let delivery = ctx.deliver_to_uid(uid, message);
    Ok(match ctx.survey_delivery(delivery) {
        Some(survey) => Reply::after_survey(survey, json!({})),
        None => Reply::ok(delivered(delivery)),
    })
}

/// The answer to a surveyed request: `body` with the counts of every node that holds the uid
/// (`connections`, `dropped` if any, `nodes`, and `partial` when some node did not answer in
/// time), and for a presence question whether the uid is `online`.
pub(crate) fn complete(mut body: Value, survey: &crate::hub::bus::Survey) -> Reply {
    if let Value::Object(fields) = &mut body {
        fields.insert("connections".into(), json!(survey.connections));
        if survey.dropped > 0 {
            fields.insert("dropped".into(), json!(survey.dropped));
        }
        fields.insert("nodes".into(), json!(survey.nodes()));
        fields.insert("partial".into(), json!(survey.partial));
        if fields.contains_key("uid") {
            fields.insert("online".into(), json!(survey.connections > 0));
        }
    }
    Reply::ok(body)
}

fn group_send(ctx: &mut Context<'_>, group: &str, request: &HttpRequest) -> Result<Reply, Reply> {
    check_group(group)?;
    let excluded: Vec<String> = form_urlencoded::parse(request.query().unwrap_or("").as_bytes())
        .filter(|(name, _)| name == "exclude")
        .flat_map(|(_, value)| {
            value
                .split(',')
                .filter(|uid| !uid.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    let excluded: Vec<&str> = excluded.iter().map(String::as_str).collect();
    let message = body_message(request)?;
    Ok(Reply::ok(delivered(
        ctx.deliver_to_group(group, message, &excluded),
    )))
}

fn member(ctx: &mut Context<'_>, group: &str, uid: &str, add: bool) -> Result<Reply, Reply> {
    check_group(group)?;
    check_uid(uid)?;
    Ok(if add {
        Reply::ok(json!({ "added": ctx.join_group(uid, group) }))
    } else {
        Reply::ok(json!({ "removed": ctx.leave_group(uid, group) }))
    })
}

fn group_info(ctx: &Context<'_>, group: &str) -> Result<Reply, Reply> {
    check_group(group)?;
    let mut members: Vec<&str> = ctx.group_members(group).collect();
    members.sort_unstable();
    let online = members.iter().filter(|uid| ctx.is_uid_online(uid)).count();
    Ok(Reply::ok(
        json!({ "group": group, "members": members, "online": online }),
    ))
}

fn uid_info(ctx: &mut Context<'_>, uid: &str) -> Result<Reply, Reply> {
    check_uid(uid)?;
    let connections = ctx.conns_of(uid).len();
    let groups: Vec<String> = ctx.groups_of(uid).map(str::to_owned).collect();
    if let Some(survey) = ctx.survey_uid(uid, None, connections) {
        return Ok(Reply::after_survey(
            survey,
            json!({ "uid": uid, "groups": groups }),
        ));
    }
    Ok(Reply::ok(json!({
        "uid": uid,
        "online": connections > 0,
        "connections": connections,
        "groups": groups,
    })))
}

/// The optional body of a kick.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KickBody {
    #[serde(default = "normal_close")]
    code: u16,
    #[serde(default)]
    reason: String,
}

fn normal_close() -> u16 {
    CloseCode::NORMAL.0
}

fn kick(ctx: &mut Context<'_>, uid: &str, request: &HttpRequest) -> Result<Reply, Reply> {
    check_uid(uid)?;
    let body: KickBody = if request.body.trim_ascii().is_empty() {
        KickBody {
            code: normal_close(),
            reason: String::new(),
        }
    } else {
        parse_json(&request.body)?
    };
    let code = CloseCode(body.code);
    if !code.is_sendable() {
        return Err(Reply::error(
            400,
            format!("close code {} may not be sent", body.code),
        ));
    }
    let conns = ctx.conns_of(uid).to_vec();
    for id in &conns {
        ctx.close(*id, code, &body.reason);
    }
    let close = Some((code.0, body.reason.as_str()));
    if let Some(survey) = ctx.survey_uid(uid, close, conns.len()) {
        return Ok(Reply::after_survey(survey, json!({})));
    }
    Ok(Reply::ok(json!({ "connections": conns.len() })))
}

/// One item of a `/batch` request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchItem {
    uid: Option<String>,
    group: Option<String>,
    #[serde(default)]
    all: bool,
    data: String,
    /// `data` is base64 and goes out as a binary message.
    #[serde(default)]
    binary: bool,
    /// Uids left out of a group send.
    #[serde(default)]
    exclude: Vec<String>,
}

fn batch(ctx: &mut Context<'_>, request: &HttpRequest) -> Result<Reply, Reply> {
    let items: Vec<BatchItem> = parse_json(&request.body)?;
    if items.len() > MAX_BATCH_ITEMS {
        return Err(Reply::error(
            413,
            format!("a batch holds at most {MAX_BATCH_ITEMS} items; split it"),
        ));
    }
    let results: Vec<Value> = items
        .iter()
        .map(|item| match batch_item(ctx, item) {
            Ok(delivery) => delivered(delivery),
            Err(message) => json!({ "error": message }),
        })
        .collect();
    Ok(Reply::ok(json!({ "results": results })))
}

fn batch_item(ctx: &mut Context<'_>, item: &BatchItem) -> Result<Delivery, String> {
    let decoded;
    let message = if item.binary {
        decoded = BASE64
            .decode(&item.data)
            .map_err(|e| format!("data is not base64: {e}"))?;
        Message::Binary(&decoded)
    } else {
        Message::Text(&item.data)
    };
    match (&item.uid, &item.group, item.all) {
        (Some(uid), None, false) => {
            validate_uid(uid).map_err(|reason| format!("invalid uid: {reason}"))?;
            Ok(ctx.deliver_to_uid(uid, message))
        }
        (None, Some(group), false) => {
            validate_uid(group).map_err(|_| format!("invalid group: {group:?}"))?;
            let excluded: Vec<&str> = item.exclude.iter().map(String::as_str).collect();
            Ok(ctx.deliver_to_group(group, message, &excluded))
        }
        (None, None, true) => Ok(ctx.deliver_to_all(message)),
        _ => Err("each item needs exactly one of \"uid\", \"group\" or \"all\": true".to_owned()),
    }
}

/// A delivery report: connections queued to, and (only when some did) how many dropped it
/// because their queue was full or they were closing.
fn delivered(delivery: Delivery) -> Value {
    if delivery.dropped == 0 {
        json!({ "connections": delivery.queued })
    } else {
        json!({ "connections": delivery.queued, "dropped": delivery.dropped })
    }
}

fn parse_json<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|e| Reply::error(400, format!("malformed JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;
    use crate::hub::Hub;
    use crate::{Config, ConnId};

    const PEER: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9);

    fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> HttpRequest {
        HttpRequest {
            method: method.to_owned(),
            target: target.to_owned(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
                .collect(),
            body: body.as_bytes().to_vec(),
            keep_alive: true,
        }
    }

    /// A hub with open connections bound to `uids`, in order.
    fn hub_with(uids: &[&str]) -> (Hub<()>, Vec<ConnId>) {
        let mut hub = Hub::new(Config::timers_off(), 100);
        let ids = uids
            .iter()
            .map(|uid| {
                let key = hub.insert((), PEER, false, Duration::ZERO);
                hub.open(key, Duration::ZERO);
                let id = hub.id_of(key);
                hub.bind_uid(id, uid, Duration::ZERO);
                id
            })
            .collect();
        (hub, ids)
    }

    fn api(key: Option<&str>) -> ApiConfig {
        ApiConfig {
            key: key.map(str::to_owned),
            ..ApiConfig::default()
        }
    }

    fn answer(hub: &mut Hub<()>, key: Option<&str>, request: &HttpRequest) -> (u16, Value) {
        let reply = handle(&mut Context::new(hub, Duration::ZERO), &api(key), request);
        let body = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        (reply.status, body)
    }

    #[test]
    fn send_counts_the_uids_connections() {
        let (mut hub, _) = hub_with(&["alice", "alice", "bob"]);
        let send = request("POST", "/send/alice", &[], "hi");
        assert_eq!(
            answer(&mut hub, None, &send),
            (200, json!({ "connections": 2 }))
        );
        let offline = request("POST", "/send/carol", &[], "hi");
        assert_eq!(
            answer(&mut hub, None, &offline),
            (200, json!({ "connections": 0 }))
        );
        let all = request("POST", "/broadcast", &[], "x");
        assert_eq!(
            answer(&mut hub, None, &all),
            (200, json!({ "connections": 3 }))
        );
    }

    #[test]
    fn a_full_queue_is_reported_as_dropped_not_as_offline() {
        let (mut hub, _) = hub_with(&["slow"]);
        hub.config.max_send_buffer = 1;
        let send = request("POST", "/send/slow", &[], "first");
        assert_eq!(
            answer(&mut hub, None, &send),
            (200, json!({ "connections": 1 }))
        );
        assert_eq!(
            answer(&mut hub, None, &send),
            (200, json!({ "connections": 0, "dropped": 1 }))
        );
        let uid = request("GET", "/uids/slow", &[], "");
        assert_eq!(answer(&mut hub, None, &uid).1["online"], true);
    }

    #[test]
    fn web_pages_and_foreign_hosts_are_refused() {
        let (mut hub, _) = hub_with(&["alice"]);
        let from = |headers: &[(&str, &str)]| request("POST", "/broadcast", headers, "hi");
        // What `fetch(url, {mode: 'no-cors', method: 'POST'})` from another site sends.
        let page = from(&[
            ("Origin", "https://evil.example"),
            ("Sec-Fetch-Site", "cross-site"),
        ]);
        assert_eq!(answer(&mut hub, None, &page).0, 403);
        let no_origin = from(&[("Sec-Fetch-Site", "cross-site")]);
        assert_eq!(answer(&mut hub, None, &no_origin).0, 403);
        // DNS rebinding: the page's own name pointed at 127.0.0.1.
        let rebound = from(&[("Host", "evil.example:5678")]);
        assert_eq!(answer(&mut hub, None, &rebound).0, 403);
        for host in [
            "localhost:5678",
            "127.0.0.1:5678",
            "[::1]:5678",
            "127.0.0.1",
        ] {
            let local = from(&[("Host", host)]);
            assert_eq!(answer(&mut hub, None, &local).0, 200, "{host}");
        }
        // An allowed origin, and a configured name.
        let mut config = api(None);
        config.allowed_origins = vec!["https://admin.example".into()];
        config.allowed_hosts = vec!["push.internal".into()];
        let admin = from(&[
            ("Origin", "https://admin.example"),
            ("Host", "push.internal"),
        ]);
        let reply = handle(&mut Context::new(&mut hub, Duration::ZERO), &config, &admin);
        assert_eq!(reply.status, 200);
        // With a key, any Host (the key protects it), but still no foreign pages.
        let keyed = from(&[("Authorization", "Bearer k"), ("Host", "push.example")]);
        assert_eq!(answer(&mut hub, Some("k"), &keyed).0, 200);
    }

    #[test]
    fn key_route_and_method_are_checked_in_that_order() {
        let (mut hub, _) = hub_with(&[]);
        let bare = request("DELETE", "/nowhere", &[], "");
        assert_eq!(answer(&mut hub, Some("k"), &bare).0, 401);
        let keyed = |method, path| request(method, path, &[("Authorization", "Bearer k")], "");
        assert_eq!(
            answer(&mut hub, Some("k"), &keyed("GET", "/nowhere")).0,
            404
        );
        let wrong = keyed("DELETE", "/send/alice");
        let reply = handle(
            &mut Context::new(&mut hub, Duration::ZERO),
            &api(Some("k")),
            &wrong,
        );
        assert_eq!(reply.status, 405);
        assert_eq!(reply.headers, [("Allow", "POST".to_owned())]);
        let wrong_key = request("GET", "/health", &[("Authorization", "Bearer x")], "");
        assert_eq!(answer(&mut hub, Some("k"), &wrong_key).0, 401);
    }

    #[test]
    fn group_routes_follow_the_membership_rule() {
        let (mut hub, _) = hub_with(&["alice", "bob"]);
        let put = |uid: &str| request("PUT", &format!("/groups/room/members/{uid}"), &[], "");
        assert_eq!(
            answer(&mut hub, None, &put("alice")),
            (200, json!({ "added": true }))
        );
        assert_eq!(
            answer(&mut hub, None, &put("alice")),
            (200, json!({ "added": false }))
        );
        answer(&mut hub, None, &put("carol"));
        let info = request("GET", "/groups/room", &[], "");
        assert_eq!(
            answer(&mut hub, None, &info).1,
            json!({ "group": "room", "members": ["alice", "carol"], "online": 1 })
        );
        let send = request("POST", "/groups/room/send?exclude=carol", &[], "hi");
        assert_eq!(answer(&mut hub, None, &send).1, json!({ "connections": 1 }));
        let bad = request("PUT", "/groups/a:b/members/alice", &[], "");
        assert_eq!(answer(&mut hub, None, &bad).0, 400);
    }

    #[test]
    fn kick_closes_every_connection_of_the_uid_with_the_code_given() {
        let (mut hub, ids) = hub_with(&["alice", "alice", "bob"]);
        let kick = request(
            "POST",
            "/uids/alice/close",
            &[],
            r#"{"code":4001,"reason":"x"}"#,
        );
        assert_eq!(
            answer(&mut hub, None, &kick),
            (200, json!({ "connections": 2 }))
        );
        let closed: Vec<(ConnId, u16)> = hub.closed.iter().map(|(id, c)| (*id, c.code.0)).collect();
        assert_eq!(closed, [(ids[0], 4001), (ids[1], 4001)]);
        let unsendable = request("POST", "/uids/bob/close", &[], r#"{"code":1006}"#);
        assert_eq!(answer(&mut hub, None, &unsendable).0, 400);
        let uid = request("GET", "/uids/bob", &[], "");
        assert_eq!(answer(&mut hub, None, &uid).1["connections"], 1);
    }

    #[test]
    fn batch_answers_each_item_on_its_own() {
        let (mut hub, _) = hub_with(&["alice"]);
        let body = r#"[{"uid":"alice","data":"a"},{"all":true,"data":"aGk=","binary":true},
                      {"uid":"alice","group":"g","data":"x"}]"#;
        let (status, reply) = answer(&mut hub, None, &request("POST", "/batch", &[], body));
        assert_eq!(status, 200);
        assert_eq!(reply["results"][0], json!({ "connections": 1 }));
        assert_eq!(reply["results"][1], json!({ "connections": 1 }));
        assert!(reply["results"][2]["error"].is_string());
    }

    #[test]
    fn batches_past_the_item_cap_are_refused_whole() {
        let (mut hub, _) = hub_with(&["alice"]);
        let item = r#"{"uid":"alice","data":"a"}"#;
        let items = vec![item; MAX_BATCH_ITEMS + 1].join(",");
        let body = format!("[{items}]");
        let (status, reply) = answer(&mut hub, None, &request("POST", "/batch", &[], &body));
        assert_eq!(status, 413, "{reply}");
        assert_eq!(hub.stats.messages_out, 0, "nothing of it was sent");
    }

    #[test]
    fn deliveries_during_a_shutdown_get_503_with_retry_after() {
        let (mut hub, _) = hub_with(&["alice"]);
        hub.close_all(Duration::ZERO);
        let send = request("POST", "/send/alice", &[], "hi");
        let reply = handle(
            &mut Context::new(&mut hub, Duration::ZERO),
            &api(None),
            &send,
        );
        assert_eq!(reply.status, 503);
        assert_eq!(reply.headers, [("Retry-After", "5".to_owned())]);
        // Reads still answer.
        let stats = request("GET", "/stats", &[], "");
        assert_eq!(answer(&mut hub, None, &stats).0, 200);
    }

    #[test]
    fn health_says_503_once_a_shutdown_began() {
        let (mut hub, _) = hub_with(&[]);
        let health = request("GET", "/health", &[], "");
        assert_eq!(answer(&mut hub, None, &health).0, 200);
        hub.close_all(Duration::ZERO);
        assert_eq!(
            answer(&mut hub, None, &health),
            (503, json!({ "status": "shutting down" }))
        );
    }
}
