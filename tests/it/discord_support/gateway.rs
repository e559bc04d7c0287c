//! A stand-in for Discord's gateway (a websocket on 127.0.0.1): HELLO on
//! connect, READY after IDENTIFY, an ACK for every heartbeat, then whatever
//! dispatches the test pushes (INTERACTION_CREATE).

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

pub struct Gateway {
    pub url: String,
    dispatch: mpsc::UnboundedSender<(String, Value)>,
    pub ready: Arc<AtomicBool>,
    /// Every frame the client sent.
    pub received: Arc<Mutex<Vec<Value>>>,
}

impl Gateway {
    pub async fn start() -> Gateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        let ready = Arc::new(AtomicBool::new(false));
        let received: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (r, log) = (ready.clone(), received.clone());
        tokio::spawn(async move {
            let mut rx = rx;
            // One session; a reconnect would need a second.
            let (stream, _) = listener.accept().await.unwrap();
            // Each dispatch goes out at once, as one frame: Nagle's algorithm
            // would hold a small frame back until the previous one is acked.
            stream.set_nodelay(true).unwrap();
            let ws = tokio_tungstenite::accept_async(stream).await.unwrap();
            let (mut out, mut incoming) = ws.split();
            let hello = json!({"op": 10, "d": {"heartbeat_interval": 41250}, "s": null, "t": null});
            out.send(Message::Text(hello.to_string())).await.unwrap();
            let mut seq = 0u64;
            loop {
                tokio::select! {
                    frame = incoming.next() => {
                        let Some(Ok(frame)) = frame else { return };
                        let Message::Text(text) = frame else { continue };
                        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                        log.lock().unwrap().push(v.clone());
                        match v["op"].as_u64() {
                            Some(1) => {
                                let _ = out.send(Message::Text(json!({"op": 11}).to_string())).await;
                            }
                            Some(2) => {
                                seq += 1;
                                let ready = json!({"op": 0, "s": seq, "t": "READY", "d": {
                                    "v": 10, "session_id": "session-1", "resume_gateway_url": "ws://127.0.0.1:9",
                                    "user": {"id": "1", "username": "slipway", "discriminator": "0", "avatar": null, "bot": true,
                                             "verified": true, "mfa_enabled": false, "flags": 0},
                                    "guilds": [], "shard": [0, 1],
                                    "application": {"id": super::APP.to_string(), "flags": 0},
                                }});
                                let _ = out.send(Message::Text(ready.to_string())).await;
                                r.store(true, Ordering::SeqCst);
                            }
                            _ => {}
                        }
                    }
                    ev = rx.recv() => {
                        let Some((t, d)) = ev else { return };
                        seq += 1;
                        let frame = json!({"op": 0, "s": seq, "t": t, "d": d});
                        if out.send(Message::Text(frame.to_string())).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Gateway {
            url,
            dispatch: tx,
            ready,
            received,
        }
    }

    /// Sends a dispatch event (e.g. INTERACTION_CREATE) to the connected client.
    pub fn dispatch(&self, event: &str, data: Value) {
        self.dispatch.send((event.into(), data)).unwrap();
    }
}
