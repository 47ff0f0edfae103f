//! `tokenwarden run` as its own process against the fake platform, with
//! its own queue in Redis.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use secrecy::SecretString;

use crate::fixture::{Fixture, schema_url};

pub const SCHEDULER_INTERVAL: &str = "250ms";
pub const WORKER_POLL: &str = "50ms";
pub const DATABASE_CONNECTIONS: &str = "32";

pub struct Daemon {
    child: Child,
    pub pid: u32,
    queue: String,
    stopped: bool,
}

impl Daemon {
    /// Starts the scheduler and the workers in one process with `concurrency`
    /// refreshes in flight, and waits until it reports ready.
    pub async fn start(fixture: &Fixture, concurrency: usize) -> anyhow::Result<Self> {
        // A port of our choosing, so readiness can be asked for.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let queue = format!("{{tw-bench-{:08x}}}:refresh", rand::random::<u32>());
        let child = Command::new(env!("CARGO_BIN_EXE_tokenwarden"))
            .args(["run", "--role", "scheduler,worker"])
            .env("TOKENWARDEN__API__LISTEN", format!("127.0.0.1:{port}"))
            .env("TOKENWARDEN__DATABASE__URL", schema_url(&fixture.schema))
            .env(
                "TOKENWARDEN__DATABASE__MAX_CONNECTIONS",
                DATABASE_CONNECTIONS,
            )
            .env("TOKENWARDEN__CRYPTO__KEYS", &fixture.key_spec)
            .env("TOKENWARDEN__REDIS__QUEUE", &queue)
            .env(
                "TOKENWARDEN__PROVIDERS__X__TOKEN_URL",
                fixture.fake.url("/x/token").as_str(),
            )
            .env("TOKENWARDEN__PROVIDERS__X__CLIENT_ID", "bench")
            .env("TOKENWARDEN__PROVIDERS__X__CLIENT_SECRET", "bench-secret")
            .env("TOKENWARDEN__PROVIDERS__X__RATE_PER_SECOND", "100000")
            .env(
                "TOKENWARDEN__PROVIDERS__X__MAX_CONCURRENCY",
                concurrency.to_string(),
            )
            .env("TOKENWARDEN__WORKER__CONCURRENCY", concurrency.to_string())
            .env("TOKENWARDEN__WORKER__POLL_INTERVAL", WORKER_POLL)
            .env("TOKENWARDEN__SCHEDULER__INTERVAL", SCHEDULER_INTERVAL)
            .env("TOKENWARDEN__LOG__FILTER", "warn")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut daemon = Daemon {
            pid: child.id(),
            child,
            queue,
            stopped: false,
        };
        if let Err(e) = daemon.wait_ready(port).await {
            let _ = daemon.stop().await;
            return Err(e);
        }
        Ok(daemon)
    }

    async fn wait_ready(&mut self, port: u16) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}/readyz");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.check_alive()?;
            if let Ok(answer) = client.get(&url).send().await
                && answer.status().is_success()
            {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the daemon was not ready within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            self.stopped = true;
            anyhow::bail!("the daemon exited: {status}");
        }
        Ok(())
    }

    /// SIGTERM and a wait for a clean exit (SIGKILL after 30 s), then the
    /// queue's keys are removed from Redis.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if !self.stopped {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            self.stopped = true;
        }
        purge_queue(&self.queue).await
    }
}

impl Drop for Daemon {
    /// A panic or an early return must not leave the process behind.
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn purge_queue(queue: &str) -> anyhow::Result<()> {
    let mut settings = tokenwarden::config::Settings::from_figment(figment::Figment::new())?;
    settings.redis.url = Some(SecretString::from(
        std::env::var("TOKENWARDEN_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
    ));
    tokenwarden::queue::purge(&settings, queue).await?;
    Ok(())
}
