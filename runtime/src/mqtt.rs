//! MQTT output (cargo feature `mqtt`): what the loop sees, published to a broker.
//!
//! Messages go into a bounded queue first. One network thread keeps the connection
//! (reconnecting after an outage) and hands queued messages to the MQTT client (QoS 1, in
//! order, a few in flight) while the broker is connected. A message stays ours until the
//! broker acknowledges it: when the connection drops, the client forgets what it had not
//! yet got acknowledged (the session is clean), so those messages go back to the front of
//! the queue and are sent again, in their order, after the reconnect. Delivery is at least
//! once: a message whose acknowledgement was lost arrives twice. When the queue is full the
//! oldest message is dropped and counted, so a long outage costs the oldest captions, never
//! memory. A last will marks the board `offline` on `<topic>/status` (retained) if it
//! vanishes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{
    Client, ConnectReturnCode, Connection, ConnectionError, Event, LastWill, Packet, QoS,
};

/// Where to publish, and how.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    /// TLS settings for an `mqtts://` broker (see [`tls_config`]); `None` is plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Topic prefix: `<topic>/caption`, `/state`, `/event`, `/stats`, `/status`.
    pub topic: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Messages kept while the broker is away.
    pub queue: usize,
    pub client_id: String,
}

/// Default queue: an hour of one caption a second is 3600; ten minutes' worth.
pub const DEFAULT_QUEUE: usize = 600;

/// A broker's address: `mqtt://host[:port]` (port 1883) or `mqtts://host[:port]` (TLS,
/// port 8883).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl MqttConfig {
    /// Reads `mqtt://host[:port]` or `mqtts://host[:port]`.
    pub fn parse_url(url: &str) -> Result<BrokerAddress, String> {
        let (rest, tls, default_port) = if let Some(r) = url.strip_prefix("mqtts://") {
            (r, true, 8883)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (r, false, 1883)
        } else {
            return Err(format!(
                "{url:?} is not an mqtt://host[:port] or mqtts://host[:port] address"
            ));
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('@') {
            return Err(format!(
                "{url:?}: credentials do not go in the address: use --mqtt-user and a password file or GLIMPSE_MQTT_PASSWORD"
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{url:?}: {p:?} is not a port number"))?,
            ),
            None => (rest, default_port),
        };
        if host.is_empty() || host.contains('/') {
            return Err(format!(
                "{url:?}: give the broker as mqtt://host[:port] or mqtts://host[:port]"
            ));
        }
        Ok(BrokerAddress {
            host: host.to_string(),
            port,
            tls,
        })
    }
}

/// TLS settings that trust the CA certificates in the PEM file `ca` (the broker's own
/// CA, as most home and site brokers have), or the system's CA store when `ca` is `None`.
pub fn tls_config(ca: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let named = |e: &dyn std::fmt::Display| format!("--mqtt-ca {}: {e}", path.display());
            if !path.is_file() {
                return Err(named(&"no such file"));
            }
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| named(&e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| named(&e))?;
            if certs.is_empty() {
                return Err(named(
                    &"no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
                ));
            }
            for c in certs {
                roots.add(c).map_err(|e| named(&e))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(
                    "no CA certificates found on this system; give the broker's CA with --mqtt-ca FILE"
                        .into(),
                );
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Clone)]
struct Message {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Message>,
}

/// Counters of the publisher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MqttStats {
    /// Handed to the broker connection.
    pub sent: u64,
    /// Acknowledged by the broker.
    pub acked: u64,
    /// Sent again because the connection dropped before the broker acknowledged them.
    pub resent: u64,
    /// Dropped because the queue was full (the oldest go first).
    pub dropped: u64,
    /// Waiting in the queue now.
    pub queued: u64,
    /// Times the connection was lost.
    pub disconnects: u64,
}

struct Shared {
    queue: Mutex<Queue>,
    connected: AtomicBool,
    /// A refusal the broker will repeat (bad credentials): publishing stops.
    fatal: Mutex<Option<String>>,
    /// Why the last try to connect failed.
    last_error: Mutex<Option<String>>,
    sent: AtomicU64,
    acked: AtomicU64,
    resent: AtomicU64,
    /// Handed to the client and not yet acknowledged.
    in_flight: AtomicU64,
    dropped: AtomicU64,
    disconnects: AtomicU64,
    stop: AtomicBool,
    /// The topic subscribed to and where its messages go (re-subscribed on reconnect).
    inbox: Mutex<Option<(String, SyncSender<Vec<u8>>)>>,
    /// Incoming messages dropped because the inbox was full.
    inbox_dropped: AtomicU64,
}

/// Largest message accepted from the broker: bigger ones end the connection, so the
/// limit is generous and the console refuses long requests itself.
pub const MAX_INCOMING: usize = 2 << 20;

pub struct Publisher {
    cfg: MqttConfig,
    shared: Arc<Shared>,
    client: Client,
    threads: Vec<JoinHandle<()>>,
}

fn refusal(code: ConnectReturnCode) -> String {
    match code {
        ConnectReturnCode::BadUserNamePassword => "bad user name or password".into(),
        ConnectReturnCode::NotAuthorized => "not authorized".into(),
        other => format!("{other:?}"),
    }
}

/// Why the connection failed, when trying again would fail the same way: a refusal by
/// the broker, or a TLS handshake that failed on the certificate or the protocol (a
/// broken connection during it is an outage like any other).
fn lasting(e: &ConnectionError) -> Option<String> {
    match e {
        ConnectionError::ConnectionRefused(code) => Some(format!(
            "the MQTT broker refused the connection: {}",
            refusal(*code)
        )),
        ConnectionError::Tls(rumqttc::TlsError::Io(io)) => {
            let tls = io.get_ref()?.downcast_ref::<rustls::Error>()?;
            let hint = match tls {
                rustls::Error::InvalidCertificate(_) => {
                    " (is --mqtt-ca the CA that signed the broker's certificate, and is the host in --mqtt the name on it?)"
                }
                rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                    " (is that port a TLS listener?)"
                }
                _ => "",
            };
            Some(format!("TLS: {tls}{hint}"))
        }
        ConnectionError::Tls(rumqttc::TlsError::Addr(_)) => None,
        ConnectionError::Tls(other) => Some(format!("TLS: {other}")),
        _ => None,
    }
}

impl Publisher {
    /// Connects to the broker (waiting up to `wait` for its answer). A refusal (bad
    /// credentials) is an error; a broker that cannot be reached yet is not: messages
    /// queue until it can.
    pub fn connect(cfg: MqttConfig, wait: Duration) -> Result<Publisher, String> {
        let mut opts = rumqttc::MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
        opts.set_keep_alive(Duration::from_secs(15));
        opts.set_max_packet_size(MAX_INCOMING, MAX_INCOMING);
        opts.set_last_will(LastWill::new(
            format!("{}/status", cfg.topic),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        if let Some(tls) = &cfg.tls {
            opts.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls.clone()),
            ));
        }
        if let Some(user) = &cfg.username {
            opts.set_credentials(user, cfg.password.clone().unwrap_or_default());
        }
        let (client, connection) = Client::new(opts, 16);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            connected: AtomicBool::new(false),
            fatal: Mutex::new(None),
            last_error: Mutex::new(None),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            inbox: Mutex::new(None),
            inbox_dropped: AtomicU64::new(0),
        });
        let mut threads = vec![];
        let net = shared.clone();
        let link = Link {
            client: client.clone(),
            status: format!("{}/status", cfg.topic),
            capacity: cfg.queue.max(1),
            handed: VecDeque::new(),
            unacked: VecDeque::new(),
        };
        threads.push(std::thread::spawn(move || network(connection, &net, link)));
        let p = Publisher {
            cfg,
            shared,
            client,
            threads,
        };
        let start = Instant::now();
        while start.elapsed() < wait && !p.shared.connected.load(Ordering::SeqCst) {
            if let Some(e) = p.fatal() {
                p.shutdown();
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(e) = p.fatal() {
            p.shutdown();
            return Err(e);
        }
        Ok(p)
    }

    pub fn topic(&self) -> &str {
        &self.cfg.topic
    }

    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// Why publishing stopped for good, if it did.
    pub fn fatal(&self) -> Option<String> {
        self.shared.fatal.lock().ok().and_then(|f| f.clone())
    }

    /// Why the last try to connect failed, if one did.
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().ok().and_then(|f| f.clone())
    }

    /// Queues `payload` for `<topic>/<sub>`; the oldest message goes when the queue is full.
    pub fn publish(&self, sub: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        self.publish_to(&format!("{}/{sub}", self.cfg.topic), payload, retain)
    }

    /// Queues `payload` for a topic outside the prefix (Home Assistant discovery).
    pub fn publish_to(&self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        let Ok(mut q) = self.shared.queue.lock() else {
            return;
        };
        if q.items.len() >= self.cfg.queue.max(1) {
            q.items.pop_front();
            self.shared.dropped.fetch_add(1, Ordering::SeqCst);
        }
        q.items.push_back(Message {
            topic: topic.to_string(),
            payload: payload.into(),
            retain,
        });
    }

    /// Subscribes to `<topic>/<sub>` (again after every reconnect); its messages come out
    /// of the returned channel, at most `capacity` waiting (more are dropped and counted).
    pub fn subscribe(&self, sub: &str, capacity: usize) -> Receiver<Vec<u8>> {
        let topic = format!("{}/{sub}", self.cfg.topic);
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
        if let Ok(mut inbox) = self.shared.inbox.lock() {
            *inbox = Some((topic.clone(), tx));
        }
        if self.is_connected() {
            let _ = self.client.try_subscribe(topic, QoS::AtLeastOnce);
        }
        rx
    }

    /// Incoming messages dropped because too many were waiting.
    pub fn inbox_dropped(&self) -> u64 {
        self.shared.inbox_dropped.load(Ordering::SeqCst)
    }

    pub fn stats(&self) -> MqttStats {
        let queued = self.shared.queue.lock().map(|q| q.items.len()).unwrap_or(0) as u64;
        MqttStats {
            sent: self.shared.sent.load(Ordering::SeqCst),
            acked: self.shared.acked.load(Ordering::SeqCst),
            resent: self.shared.resent.load(Ordering::SeqCst),
            dropped: self.shared.dropped.load(Ordering::SeqCst),
            queued,
            disconnects: self.shared.disconnects.load(Ordering::SeqCst),
        }
    }

    /// Publishes `offline`, waits up to `wait` for the queue to be delivered and
    /// acknowledged, then disconnects. Returns the final counters.
    pub fn finish(self, wait: Duration) -> MqttStats {
        self.publish("status", "offline", true);
        let start = Instant::now();
        while start.elapsed() < wait && self.fatal().is_none() {
            let s = self.stats();
            if s.queued == 0 && self.shared.in_flight.load(Ordering::SeqCst) == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let stats = self.stats();
        self.shutdown();
        stats
    }

    fn shutdown(self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.client.disconnect();
        drop(self.client);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Most messages handed to the client and not yet acknowledged.
const MAX_IN_FLIGHT: usize = 8;

/// The network thread's view of what it handed to the client.
struct Link {
    client: Client,
    status: String,
    /// The queue's bound, kept when messages come back to it.
    capacity: usize,
    /// Handed to the client, in order, not yet written (no packet id yet).
    handed: VecDeque<Message>,
    /// Written with a packet id, in order, waiting for the broker's acknowledgement.
    unacked: VecDeque<(u16, Message)>,
}

impl Link {
    fn in_flight(&self) -> usize {
        self.handed.len() + self.unacked.len()
    }

    fn count(&self, shared: &Shared) {
        shared
            .in_flight
            .store(self.in_flight() as u64, Ordering::SeqCst);
    }

    /// Hands queued messages to the client while connected and few are in flight. Only
    /// this thread publishes, between polls, so nothing reaches the client's channel
    /// while a lost connection is being cleaned up.
    fn pump(&mut self, shared: &Shared) {
        if !shared.connected.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut q) = shared.queue.lock() else {
            return;
        };
        while self.in_flight() < MAX_IN_FLIGHT
            && let Some(msg) = q.items.pop_front()
        {
            let publish = self.client.try_publish(
                msg.topic.clone(),
                QoS::AtLeastOnce,
                msg.retain,
                msg.payload.clone(),
            );
            if publish.is_err() {
                q.items.push_front(msg);
                break;
            }
            self.handed.push_back(msg);
            shared.sent.fetch_add(1, Ordering::SeqCst);
        }
        self.count(shared);
    }

    /// The client wrote a publish with packet id `pkid`. A publish it sends again from a
    /// resumed session has an id already waiting.
    fn written(&mut self, pkid: u16) {
        if self.unacked.iter().any(|(id, _)| *id == pkid) {
            return;
        }
        if let Some(msg) = self.handed.pop_front() {
            self.unacked.push_back((pkid, msg));
        }
    }

    fn acknowledged(&mut self, pkid: u16, shared: &Shared) {
        if let Some(i) = self.unacked.iter().position(|(id, _)| *id == pkid) {
            self.unacked.remove(i);
            shared.acked.fetch_add(1, Ordering::SeqCst);
        }
        self.count(shared);
    }

    /// A new connection. Without a session the client has forgotten every message not
    /// acknowledged: they go back to the front of the queue, oldest first, behind the
    /// `online` status. The queue keeps its bound by dropping the oldest.
    fn connected(&mut self, session_present: bool, shared: &Shared) {
        let Ok(mut q) = shared.queue.lock() else {
            return;
        };
        if !session_present {
            let back: Vec<Message> = self
                .unacked
                .drain(..)
                .map(|(_, m)| m)
                .chain(self.handed.drain(..))
                .collect();
            shared.resent.fetch_add(back.len() as u64, Ordering::SeqCst);
            for msg in back.into_iter().rev() {
                q.items.push_front(msg);
            }
        }
        while q.items.len() >= self.capacity {
            q.items.pop_front();
            shared.dropped.fetch_add(1, Ordering::SeqCst);
        }
        q.items.push_front(Message {
            topic: self.status.clone(),
            payload: b"online".to_vec(),
            retain: true,
        });
        self.count(shared);
    }
}

/// Keeps the connection: polls it, hands it queued messages, notes connects, acks and
/// losses, reconnects.
fn network(mut connection: Connection, shared: &Shared, mut link: Link) {
    while !shared.stop.load(Ordering::SeqCst) {
        link.pump(shared);
        match connection.recv_timeout(Duration::from_millis(20)) {
            Err(rumqttc::RecvTimeoutError::Timeout) => {}
            Err(rumqttc::RecvTimeoutError::Disconnected) => break,
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                link.connected(ack.session_present, shared);
                if let Ok(inbox) = shared.inbox.lock()
                    && let Some((topic, _)) = inbox.as_ref()
                {
                    let _ = link.client.try_subscribe(topic.clone(), QoS::AtLeastOnce);
                }
                shared.connected.store(true, Ordering::SeqCst);
            }
            Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid)))) => link.written(pkid),
            Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                link.acknowledged(ack.pkid, shared);
            }
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                if let Ok(inbox) = shared.inbox.lock()
                    && let Some((topic, tx)) = inbox.as_ref()
                    && *topic == p.topic
                    && let Err(TrySendError::Full(_)) = tx.try_send(p.payload.to_vec())
                {
                    shared.inbox_dropped.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                if let Some(reason) = lasting(&e) {
                    if let Ok(mut f) = shared.fatal.lock() {
                        *f = Some(reason);
                    }
                    shared.connected.store(false, Ordering::SeqCst);
                    break;
                }
                if let Ok(mut last) = shared.last_error.lock() {
                    *last = Some(e.to_string());
                }
                if shared.connected.swap(false, Ordering::SeqCst) {
                    shared.disconnects.fetch_add(1, Ordering::SeqCst);
                }
                // the next poll reconnects; not in a tight loop
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// The serial console's JSON mode over MQTT: each message on `<topic>/ask` is a request
/// line, each reply line is a message on `<topic>/answer`.
pub struct MqttWire<'p> {
    publisher: &'p Publisher,
    inbox: Receiver<Vec<u8>>,
    /// The rest of the message being read.
    pending: VecDeque<u8>,
    /// A reply line being written.
    line: Vec<u8>,
}

impl<'p> MqttWire<'p> {
    /// Subscribes to `<topic>/ask`, keeping at most `capacity` requests waiting.
    pub fn new(publisher: &'p Publisher, capacity: usize) -> MqttWire<'p> {
        MqttWire {
            inbox: publisher.subscribe("ask", capacity),
            publisher,
            pending: VecDeque::new(),
            line: Vec::new(),
        }
    }
}

impl crate::console::Wire for MqttWire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pending.is_empty() {
            match self.inbox.recv_timeout(crate::console::IO_TIMEOUT) {
                Ok(mut msg) => {
                    // one message is one line, whatever it holds
                    msg.retain(|&b| b != b'\n' && b != b'\r');
                    msg.push(b'\n');
                    self.pending.extend(msg);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    return Err(std::io::ErrorKind::TimedOut.into());
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(std::io::Error::other("the MQTT connection ended"));
                }
            }
        }
        let n = buf.len().min(self.pending.len());
        for (b, p) in buf.iter_mut().zip(self.pending.drain(..n)) {
            *b = p;
        }
        Ok(n)
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if let Some(e) = self.publisher.fatal() {
            return Err(std::io::Error::other(e));
        }
        self.line.extend_from_slice(bytes);
        while let Some(end) = self.line.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.line.drain(..=end).take(end).collect();
            if !line.is_empty() {
                self.publisher.publish("answer", line, false);
            }
        }
        Ok(())
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    fn ends_at_eof(&self) -> bool {
        false
    }

    fn wants_echo(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!(
            "MQTT {}:{} ({}/ask → {}/answer)",
            self.publisher.cfg.host,
            self.publisher.cfg.port,
            self.publisher.topic(),
            self.publisher.topic()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses_are_parsed_or_refused_with_a_reason() {
        let addr = |host: &str, port, tls| BrokerAddress {
            host: host.into(),
            port,
            tls,
        };
        assert_eq!(
            MqttConfig::parse_url("mqtt://broker:1884").unwrap(),
            addr("broker", 1884, false)
        );
        assert_eq!(
            MqttConfig::parse_url("mqtt://10.0.0.2").unwrap(),
            addr("10.0.0.2", 1883, false)
        );
        assert_eq!(
            MqttConfig::parse_url("mqtts://b").unwrap(),
            addr("b", 8883, true)
        );
        assert_eq!(
            MqttConfig::parse_url("mqtts://b:9000/").unwrap(),
            addr("b", 9000, true)
        );
        assert!(
            MqttConfig::parse_url("http://b")
                .unwrap_err()
                .contains("mqtt://")
        );
        assert!(
            MqttConfig::parse_url("mqtt://b:99999")
                .unwrap_err()
                .contains("port")
        );
        assert!(
            MqttConfig::parse_url("mqtt://u:p@b")
                .unwrap_err()
                .contains("--mqtt-user")
        );
    }

    #[test]
    fn a_ca_file_without_certificates_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = tls_config(Some(&empty)).unwrap_err();
        assert!(err.contains("ca.pem") && err.contains("no PEM"), "{err}");
        let missing = dir.path().join("missing.pem");
        let err = tls_config(Some(&missing)).unwrap_err();
        assert!(err.contains("missing.pem"), "{err}");
    }
}
