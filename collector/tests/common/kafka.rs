//! The Kafka-protocol brokers of the tests: the two shared ones of `.ci/services`
//! (`NEVERMORE_KAFKA_BROKERS`), private ones a fault test can stop, topics, and a consumer that
//! reads everything back.

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    Noida,
    Tansu,
}

/// The shared brokers, each on its own (they are two servers, not one cluster). Fails when the
/// variable is unset or a broker is unreachable: a test never skips.
pub fn brokers() -> Vec<String> {
    let list = std::env::var("NEVERMORE_KAFKA_BROKERS").unwrap_or_default();
    assert!(
        !list.trim().is_empty(),
        "NEVERMORE_KAFKA_BROKERS is not set: run `.ci/services start` and source the env file it \
         writes (default /tmp/nevermore-services/env)"
    );
    let out: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    for b in &out {
        std::net::TcpStream::connect_timeout(&b.parse().unwrap(), Duration::from_secs(2))
            .unwrap_or_else(|e| {
                panic!("kafka broker {b} from NEVERMORE_KAFKA_BROKERS is unreachable: {e}")
            });
    }
    out
}

/// A name no other test (or earlier run against the same broker) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

pub async fn create_topics(bootstrap: &str, topics: &[&str], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    for r in results {
        if let Err((t, e)) = r {
            assert!(
                e == rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists,
                "cannot create topic {t}: {e}"
            );
        }
    }
}

/// One message read back.
#[derive(Debug, Clone)]
pub struct Got {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: serde_json::Value,
}

impl Got {
    fn of(m: &rdkafka::message::BorrowedMessage<'_>) -> Got {
        Got {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: serde_json::from_slice(m.payload().unwrap_or_default())
                .unwrap_or(serde_json::Value::Null),
        }
    }
}

/// Reads `topics` from the start until `want` messages arrived (or `timeout`), with a fresh
/// group.
pub fn consume(bootstrap: &str, topics: &[&str], want: usize, timeout: Duration) -> Vec<Got> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("check"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(topics).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(Got::of(&m)),
            Some(Err(e)) => eprintln!("consume: {e}"),
            None => {}
        }
    }
    // A little longer: anything beyond `want` is a duplicate the caller must see.
    let extra_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < extra_until {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            out.push(Got::of(&m));
        }
    }
    out
}

/// A broker of the test's own, which the test may stop, freeze and restart.
pub struct OwnBroker {
    pub which: Impl,
    pub port: u16,
    pub data_dir: PathBuf,
    child: Option<Child>,
}

impl OwnBroker {
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn start(which: Impl, data_dir: &Path) -> OwnBroker {
        let port = free_port();
        let mut b = OwnBroker {
            which,
            port,
            data_dir: data_dir.to_owned(),
            child: None,
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let bin_var = match self.which {
            Impl::Noida => "NEVERMORE_NOIDA_BIN",
            Impl::Tansu => "NEVERMORE_TANSU_BIN",
        };
        let bin = std::env::var(bin_var).unwrap_or_else(|_| {
            panic!("{bin_var} is not set: run `.ci/services start` and source its env file")
        });
        std::fs::create_dir_all(&self.data_dir).unwrap();
        let log = std::fs::File::create(self.data_dir.join("broker.log")).unwrap();
        let mut cmd = Command::new(bin);
        match self.which {
            Impl::Noida => {
                cmd.args([
                    "start",
                    "--only",
                    "kafka",
                    "--host",
                    "127.0.0.1",
                    "--kafka-port",
                ])
                .arg(self.port.to_string())
                .arg("--data-dir")
                .arg(self.data_dir.join("noida"));
            }
            Impl::Tansu => {
                let url = format!("tcp://127.0.0.1:{}", self.port);
                cmd.args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                .args(["--storage-engine", "memory://tansu/"]);
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "own broker did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.as_ref().unwrap().id()).unwrap()
    }

    /// SIGSTOP: the broker holds its connections and answers nothing (a hung broker).
    pub fn freeze(&self) {
        signal(self.pid(), "STOP");
    }

    pub fn thaw(&self) {
        signal(self.pid(), "CONT");
    }

    /// SIGKILL, then nothing listens on the port until `restart`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: a clean shutdown, after which the broker has its data (noida-db
    /// keeps acknowledged records in memory until then: a SIGKILL can lose them, a broker
    /// durability matter that no client can repair).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(i32::try_from(c.id()).unwrap(), "TERM");
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and data (noida keeps its data; tansu's is in memory).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the broker is running");
        self.spawn();
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        if self.child.is_some() {
            signal(self.pid(), "CONT");
        }
        self.kill();
    }
}

fn signal(pid: i32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid} failed");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
