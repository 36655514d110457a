//! `--mqtt`: the watch loop's captions, alerts and statistics published to a broker
//! (cargo feature `mqtt`; without it the options are refused with a reason).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use glimpse_runtime::watch::{Event, Summary};

/// Options of `glimpse watch --mqtt`.
#[derive(clap::Args, Debug, Clone)]
pub struct MqttArgs {
    /// Publish to this MQTT broker, mqtt://host[:port] or mqtts://host[:port] (TLS):
    /// captions on TOPIC/caption (and the
    /// latest, retained, on TOPIC/state), alerts and notices on TOPIC/event, statistics on
    /// TOPIC/stats, online/offline on TOPIC/status (needs the `mqtt` build feature).
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<String>,
    /// CA certificate(s), PEM, that signed an mqtts:// broker's certificate (default: the
    /// system's CA store).
    #[arg(long, value_name = "FILE", requires = "mqtt")]
    pub mqtt_ca: Option<PathBuf>,
    /// Topic prefix.
    #[arg(long, default_value = "glimpse", requires = "mqtt")]
    pub topic: String,
    /// User name at the broker; the password comes from --mqtt-password-file or the
    /// environment variable GLIMPSE_MQTT_PASSWORD.
    #[arg(long, value_name = "USER", requires = "mqtt")]
    pub mqtt_user: Option<String>,
    /// File holding the broker password (its first line).
    #[arg(long, value_name = "FILE", requires = "mqtt_user")]
    pub mqtt_password_file: Option<PathBuf>,
    /// Messages kept while the broker is unreachable; beyond it the oldest are dropped
    /// and counted.
    #[arg(long, value_name = "N", default_value_t = 600, value_parser = super::positive::<usize>, requires = "mqtt")]
    pub mqtt_queue: usize,
    /// Seconds between statistics messages.
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = super::positive::<u64>, requires = "mqtt")]
    pub mqtt_stats: u64,
    /// Announce the board to Home Assistant (MQTT discovery under this prefix): a
    /// caption sensor, and a binary sensor for the --trigger text (watch).
    #[arg(long, value_name = "PREFIX", num_args = 0..=1, default_missing_value = "homeassistant", requires = "mqtt")]
    pub ha_discovery: Option<String>,
}

impl MqttArgs {
    fn password(&self) -> Result<Option<String>, String> {
        if self.mqtt_user.is_none() {
            return Ok(None);
        }
        if let Some(f) = &self.mqtt_password_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("--mqtt-password-file {}: {e}", f.display()))?;
            return Ok(Some(text.lines().next().unwrap_or("").to_string()));
        }
        Ok(std::env::var("GLIMPSE_MQTT_PASSWORD").ok())
    }

    /// Connects when `--mqtt` is given; `trigger` is the watch loop's trigger text, for
    /// Home Assistant discovery.
    pub fn open(&self, trigger: Option<&str>) -> Result<Option<Mqtt>, String> {
        let Some(url) = &self.mqtt else {
            return Ok(None);
        };
        Mqtt::open(self, url, trigger).map(Some)
    }
}

/// The loop's publisher, what it has seen, and when it last sent statistics.
pub struct Mqtt {
    #[cfg(feature = "mqtt")]
    publisher: glimpse_runtime::mqtt::Publisher,
    every: Duration,
    last_stats: Instant,
    seen: Counts,
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
struct Counts {
    captioned: u64,
    alerts: u64,
    notices: u64,
    errors: u64,
}

/// `glimpse serve --mqtt`: the console's JSON mode over the broker (requests on
/// TOPIC/ask, replies on TOPIC/answer) until stopped.
#[cfg(feature = "mqtt")]
pub fn serve(
    g: &glimpse_runtime::Glimpse,
    source: Box<dyn glimpse_runtime::source::FrameSource>,
    args: &MqttArgs,
    views: usize,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<glimpse_runtime::console::ConsoleStats, String> {
    use glimpse_runtime::console::{ServeOptions, serve};
    use glimpse_runtime::mqtt::MqttWire;
    let url = args.mqtt.as_deref().unwrap_or_default();
    let publisher = args.connect(url, None)?;
    let mut wire = MqttWire::new(&publisher, args.mqtt_queue);
    let r = serve(
        g,
        source,
        &mut wire,
        ServeOptions { json: true, views },
        stop,
    );
    let dropped = publisher.inbox_dropped();
    let fatal = publisher.fatal();
    drop(wire);
    let sent = publisher.finish(Duration::from_secs(5));
    if dropped > 0 {
        glimpse_runtime::note!(
            "glimpse: mqtt: {dropped} requests dropped (more than --mqtt-queue waiting)"
        );
    }
    glimpse_runtime::note!(
        "glimpse: mqtt: sent {}, acknowledged {}, dropped {}",
        sent.sent,
        sent.acked,
        sent.dropped
    );
    if let Some(e) = fatal {
        return Err(format!("--mqtt {url}: {e}"));
    }
    r
}

/// Home Assistant MQTT discovery: the board as a device with a caption sensor and, when
/// there is a trigger, a binary sensor for it (retained, so Home Assistant finds them
/// whenever it starts).
#[cfg(feature = "mqtt")]
fn announce(p: &glimpse_runtime::mqtt::Publisher, prefix: &str, trigger: Option<&str>) {
    let topic = p.topic().to_string();
    let node: String = topic
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let device = serde_json::json!({
        "identifiers": [format!("glimpse_{node}")],
        "name": format!("Glimpse {topic}"),
        "manufacturer": "Glimpse",
    });
    let caption = serde_json::json!({
        "name": "Caption",
        "unique_id": format!("glimpse_{node}_caption"),
        "state_topic": format!("{topic}/state"),
        "value_template": "{{ value_json.caption }}",
        "json_attributes_topic": format!("{topic}/state"),
        "availability_topic": format!("{topic}/status"),
        "device": device,
    });
    let prefix = prefix.trim_end_matches('/');
    p.publish_to(
        &format!("{prefix}/sensor/glimpse_{node}/caption/config"),
        caption.to_string(),
        true,
    );
    if let Some(text) = trigger {
        let sensor = serde_json::json!({
            "name": format!("Sees: {text}"),
            "unique_id": format!("glimpse_{node}_trigger"),
            "state_topic": format!("{topic}/trigger"),
            "payload_on": "ON",
            "payload_off": "OFF",
            "availability_topic": format!("{topic}/status"),
            "device": device,
        });
        p.publish_to(
            &format!("{prefix}/binary_sensor/glimpse_{node}/trigger/config"),
            sensor.to_string(),
            true,
        );
        // off until the first alert
        p.publish("trigger", "OFF", true);
    }
}

#[cfg(not(feature = "mqtt"))]
pub fn serve(
    _g: &glimpse_runtime::Glimpse,
    _source: Box<dyn glimpse_runtime::source::FrameSource>,
    args: &MqttArgs,
    _views: usize,
    _stop: &std::sync::atomic::AtomicBool,
) -> Result<glimpse_runtime::console::ConsoleStats, String> {
    Mqtt::open(args, args.mqtt.as_deref().unwrap_or_default(), None).map(|_| Default::default())
}

#[cfg(not(feature = "mqtt"))]
impl Mqtt {
    fn open(args: &MqttArgs, url: &str, _trigger: Option<&str>) -> Result<Mqtt, String> {
        let _ = (args.password(), args.every());
        Err(format!(
            "--mqtt {url}: this glimpse was built without MQTT; build it with `--features mqtt`"
        ))
    }

    pub fn on_event(&mut self, _event: &Event) {
        let _ = (self.every, self.last_stats, self.seen);
    }

    pub fn finish(self, _summary: &Summary) -> Option<serde_json::Value> {
        None
    }
}

impl MqttArgs {
    fn every(&self) -> Duration {
        Duration::from_secs(self.mqtt_stats)
    }

    /// Connects to the broker at `url`, announcing the board to Home Assistant when asked
    /// (`trigger`: the watch loop's trigger text).
    #[cfg(feature = "mqtt")]
    fn connect(
        &self,
        url: &str,
        trigger: Option<&str>,
    ) -> Result<glimpse_runtime::mqtt::Publisher, String> {
        let publisher =
            glimpse_runtime::mqtt::Publisher::connect(self.config(url)?, Duration::from_secs(3))
                .map_err(|e| format!("--mqtt {url}: {e}"))?;
        if !publisher.is_connected() {
            let why = publisher
                .last_error()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            glimpse_runtime::note!(
                "glimpse: the MQTT broker at {url} is not reachable yet{why}; messages queue until it is"
            );
        }
        if let Some(prefix) = &self.ha_discovery {
            announce(&publisher, prefix, trigger);
        }
        Ok(publisher)
    }

    #[cfg(feature = "mqtt")]
    fn config(&self, url: &str) -> Result<glimpse_runtime::mqtt::MqttConfig, String> {
        use glimpse_runtime::mqtt::MqttConfig;
        let address = MqttConfig::parse_url(url).map_err(|e| format!("--mqtt: {e}"))?;
        let tls = match (address.tls, &self.mqtt_ca) {
            (true, ca) => Some(glimpse_runtime::mqtt::tls_config(ca.as_deref())?),
            (false, Some(_)) => {
                return Err(format!(
                    "--mqtt-ca is for TLS brokers: give the address as mqtts://{}:{}",
                    address.host, address.port
                ));
            }
            (false, None) => None,
        };
        Ok(MqttConfig {
            host: address.host,
            port: address.port,
            tls,
            topic: self.topic.trim_end_matches('/').to_string(),
            username: self.mqtt_user.clone(),
            password: self.password()?,
            queue: self.mqtt_queue,
            client_id: format!("glimpse-{}", std::process::id()),
        })
    }
}

#[cfg(feature = "mqtt")]
impl Mqtt {
    fn open(args: &MqttArgs, url: &str, trigger: Option<&str>) -> Result<Mqtt, String> {
        let publisher = args.connect(url, trigger)?;
        Ok(Mqtt {
            publisher,
            every: args.every(),
            last_stats: Instant::now(),
            seen: Counts::default(),
        })
    }

    /// Publishes what the loop saw; statistics when they are due.
    pub fn on_event(&mut self, event: &Event) {
        let p = &self.publisher;
        match event {
            Event::Caption(c) => {
                self.seen.captioned += 1;
                let json = c.to_json().to_string();
                p.publish("caption", json.clone(), false);
                p.publish("state", json, true);
            }
            Event::Alert(a) => {
                self.seen.alerts += 1;
                p.publish("event", a.to_json().to_string(), false);
                let on = matches!(a.edge, glimpse_runtime::watch::Edge::Rise);
                p.publish("trigger", if on { "ON" } else { "OFF" }, true);
            }
            Event::Notice(n) => {
                self.seen.notices += 1;
                p.publish("event", n.to_json().to_string(), false)
            }
            Event::Error { seq, reason } => {
                self.seen.errors += 1;
                p.publish(
                    "event",
                    serde_json::json!({"event": "error", "seq": seq, "reason": reason}).to_string(),
                    false,
                )
            }
        }
        if self.last_stats.elapsed() >= self.every {
            self.last_stats = Instant::now();
            let mut v = serde_json::to_value(self.seen).unwrap_or_default();
            v["event"] = "stats".into();
            v["mqtt"] = serde_json::to_value(p.stats()).unwrap_or_default();
            p.publish("stats", v.to_string(), false);
        }
    }

    fn stats_json(&self, summary: &Summary) -> serde_json::Value {
        let mut v = summary.to_json();
        v["event"] = "stats".into();
        v["mqtt"] = serde_json::to_value(self.publisher.stats()).unwrap_or_default();
        v
    }

    /// The last statistics, then `offline`; waits a few seconds for delivery. Returns the
    /// publisher's counters.
    pub fn finish(self, summary: &Summary) -> Option<serde_json::Value> {
        self.publisher
            .publish("stats", self.stats_json(summary).to_string(), false);
        if let Some(e) = self.publisher.fatal() {
            glimpse_runtime::note!("glimpse: mqtt: {e}");
        }
        let stats = self.publisher.finish(Duration::from_secs(5));
        serde_json::to_value(stats).ok()
    }
}
