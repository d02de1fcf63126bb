//! A chat room on the wspush library: every client joins under the name in its URL, and every
//! text message it sends goes to everyone as `name: text` (`/me waves` becomes `* name waves`).
//!
//! Run it (the address is optional, default 127.0.0.1:8080):
//!
//! ```text
//! cargo run --example chat -- 127.0.0.1:8080
//! ```
//!
//! Try it from two terminals with `websocat ws://127.0.0.1:8080/?name=alice` and
//! `websocat ws://127.0.0.1:8080/?name=bob`, or from a browser console:
//!
//! ```text
//! ws = new WebSocket("ws://127.0.0.1:8080/?name=carol");
//! ws.onmessage = (e) => console.log(e.data);
//! ws.send("hello");
//! ```
//!
//! Ctrl-C closes every connection (1001) and stops the server.

use std::net::SocketAddr;

use wspush::{
    Accept, CloseInfo, Config, ConnId, Context, Handler, Message, Rejection, Request, Server,
};

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const MAX_NAME_LEN: usize = 32;

struct Room;

impl Handler for Room {
    fn on_open(
        &mut self,
        ctx: &mut Context<'_>,
        conn: ConnId,
        request: &Request<'_>,
    ) -> Result<Accept, Rejection> {
        let name = request
            .query()
            .and_then(|query| query.split('&').find_map(|pair| pair.strip_prefix("name=")))
            .ok_or_else(|| Rejection::new(400, "connect to /?name=YOU to pick a name"))?;
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(valid) {
            return Err(Rejection::new(
                400,
                format!("a name is 1 to {MAX_NAME_LEN} letters, digits, '-' or '_'"),
            ));
        }
        if ctx.is_uid_online(name) {
            return Err(Rejection::new(
                409,
                format!("{name} is already in the room"),
            ));
        }
        ctx.bind_uid(conn, name);
        ctx.broadcast(format!("{name} joined").as_str());
        Ok(Accept::default())
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, message: Message<'_>) {
        let Message::Text(text) = message else {
            return; // only text is relayed
        };
        let name = ctx.uid_of(conn).unwrap_or("?");
        let line = match text.strip_prefix("/me ") {
            Some(action) => format!("* {name} {action}"),
            None => format!("{name}: {text}"),
        };
        ctx.broadcast(line.as_str());
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, _close: &CloseInfo) {
        if let Some(name) = ctx.uid_of(conn) {
            let line = format!("{name} left");
            ctx.broadcast(line.as_str());
        }
    }
}

fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let Ok(listen) = listen.parse::<SocketAddr>() else {
        eprintln!("usage: chat [ADDR:PORT]   (default {DEFAULT_LISTEN}; got {listen:?})");
        std::process::exit(2);
    };
    let mut server = Server::bind(
        Config {
            listen,
            ..Config::default()
        },
        Room,
    )?;
    server.handle_signals()?;
    println!("chat listening on ws://{}/?name=YOU", server.local_addr());
    server.run()
}
