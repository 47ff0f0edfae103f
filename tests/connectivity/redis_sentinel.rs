//! Redis Sentinel: a primary, its replica and a sentinel watching them. The
//! daemon finds the primary through the sentinel; when the primary is
//! killed, the sentinel promotes the replica and refreshes go on there.

use std::time::{Duration, Instant};

use crate::common::TestEnv;
use crate::servers::{RedisProcess, free_port, wait_for};
use crate::support::{
    Daemon, assert_each_refreshed_exactly_once, refreshed, seed, tune, wait_until_refreshed,
};
use tokenwarden::config::RedisMode;

const MASTER: &str = "tokenwarden-primary";

struct SentinelSetup {
    primary: RedisProcess,
    replica: RedisProcess,
    sentinel: RedisProcess,
}

fn start() -> SentinelSetup {
    let primary = RedisProcess::start(free_port(), &[], None, None);
    let replica = RedisProcess::start(
        free_port(),
        &[
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.port.to_string(),
        ],
        None,
        None,
    );
    wait_for("the replica to sync", Duration::from_secs(20), || {
        replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    });
    let sentinel_port = free_port();
    let conf_dir = crate::servers::TempDir::new("sentinel-conf");
    let conf = conf_dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {sentinel_port}\n\
             sentinel monitor {MASTER} 127.0.0.1 {} 1\n\
             sentinel down-after-milliseconds {MASTER} 1000\n\
             sentinel failover-timeout {MASTER} 10000\n\
             sentinel parallel-syncs {MASTER} 1\n",
            primary.port
        ),
    )
    .unwrap();
    let mut sentinel = RedisProcess::start(
        sentinel_port,
        &[conf.display().to_string(), "--sentinel".into()],
        None,
        None,
    );
    // The sentinel rewrites its file: keep the directory as long as it runs.
    sentinel.keep(conf_dir);
    wait_for(
        "the sentinel to see the replica",
        Duration::from_secs(20),
        || {
            sentinel
                .cli(&["SENTINEL", "REPLICAS", MASTER])
                .contains(&replica.port.to_string())
        },
    );
    SentinelSetup {
        primary,
        replica,
        sentinel,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_continue_after_the_primary_is_killed_and_the_replica_promoted() {
    let mut setup = start();
    let url = format!("redis://127.0.0.1:{}", setup.sentinel.port);
    let env = TestEnv::with(|s| {
        tune(s, &url);
        s.redis.mode = RedisMode::Sentinel;
        s.redis.sentinel_master = Some(MASTER.into());
    })
    .await;
    env.settings.validate().unwrap();
    let mut seeded = seed(&env, "before", 30).await;
    let daemon = Daemon::start(&env, "{tokenwarden}:refresh");
    wait_until_refreshed(&env, 30, Duration::from_secs(60)).await;

    // Give the replica the queue's latest writes, then crash the primary
    // and add work that only the promoted replica can carry.
    tokio::time::sleep(Duration::from_millis(300)).await;
    setup.primary.kill();
    let killed = Instant::now();
    seeded.extend(seed(&env, "after", 30).await);
    let first_after = {
        loop {
            if refreshed(&env).await > 30 {
                break killed.elapsed();
            }
            assert!(
                killed.elapsed() < Duration::from_secs(90),
                "no refresh within 90 s of the primary's death"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    wait_until_refreshed(&env, 60, Duration::from_secs(90)).await;
    let all_after = killed.elapsed();
    eprintln!(
        "sentinel failover: first refresh {first_after:?} after the primary died, all 30 after {all_after:?}"
    );
    assert!(
        setup.replica.cli(&["ROLE"]).starts_with("master"),
        "the replica was promoted"
    );
    daemon.stop().await;
    assert_each_refreshed_exactly_once(&env, &seeded).await;
}
