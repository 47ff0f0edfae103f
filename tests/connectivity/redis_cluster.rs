//! Redis Cluster: three primaries made by `redis-cli --cluster create`, and a
//! replica for the primary that holds the queue's slot. The queue's keys must
//! share the slot of the one key apalis-redis writes outside them; a queue
//! elsewhere is refused at start-up, and the test shows why.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokenwarden::config::{APALIS_QUEUES_KEY, DEFAULT_TOML, RedisMode, Settings};

use crate::common::TestEnv;
use crate::servers::{RedisProcess, free_port, wait_for};
use crate::support::{
    Daemon, assert_each_refreshed_exactly_once, refreshed, seed, tune, wait_until_refreshed,
};

const QUEUE: &str = "{core:apalis:queues:list}:refresh";

struct Cluster {
    primaries: Vec<RedisProcess>,
    replica: RedisProcess,
    /// Index in `primaries` of the one holding the queue's slot.
    queue_primary: usize,
}

fn node() -> RedisProcess {
    let port = free_port();
    RedisProcess::start(
        port,
        &[
            "--cluster-enabled".into(),
            "yes".into(),
            "--cluster-node-timeout".into(),
            "1000".into(),
            "--cluster-config-file".into(),
            format!("nodes-{port}.conf"),
        ],
        None,
        None,
    )
}

fn start() -> Cluster {
    let primaries: Vec<RedisProcess> = (0..3).map(|_| node()).collect();
    let mut create = vec!["--cluster", "create"];
    let addresses: Vec<String> = primaries
        .iter()
        .map(|p| format!("127.0.0.1:{}", p.port))
        .collect();
    create.extend(addresses.iter().map(String::as_str));
    create.push("--cluster-yes");
    primaries[0].cli(&create);
    wait_for("the cluster to be ok", Duration::from_secs(30), || {
        primaries
            .iter()
            .all(|p| p.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    });
    let slot: u16 = primaries[0]
        .cli(&["CLUSTER", "KEYSLOT", APALIS_QUEUES_KEY])
        .trim()
        .parse()
        .unwrap();
    let nodes = primaries[0].cli(&["CLUSTER", "NODES"]);
    let (owner_id, owner_port) = nodes
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let serves = fields[8..].iter().any(|range| {
                let (from, to) = range.split_once('-').unwrap_or((range, range));
                matches!((from.parse::<u16>(), to.parse::<u16>()), (Ok(f), Ok(t)) if f <= slot && slot <= t)
            });
            let port: u16 = fields[1].split([':', '@']).nth(1)?.parse().ok()?;
            serves.then(|| (fields[0].to_owned(), port))
        })
        .expect("a primary serves the queue's slot");
    let queue_primary = primaries.iter().position(|p| p.port == owner_port).unwrap();
    let replica = node();
    primaries[0].cli(&[
        "--cluster",
        "add-node",
        &format!("127.0.0.1:{}", replica.port),
        &addresses[0],
        "--cluster-slave",
        "--cluster-master-id",
        &owner_id,
    ]);
    wait_for("the replica to sync", Duration::from_secs(30), || {
        replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    });
    Cluster {
        primaries,
        replica,
        queue_primary,
    }
}

#[test]
fn a_queue_outside_the_registry_keys_slot_is_refused_and_would_fail() {
    let mut settings = Settings::from_figment(
        figment::Figment::new()
            .merge(<figment::providers::Toml as figment::providers::Format>::string(DEFAULT_TOML)),
    )
    .unwrap();
    settings.redis.mode = RedisMode::Cluster;
    settings.redis.url = Some(SecretString::from("redis://127.0.0.1:7000"));
    let error = settings.validate().unwrap_err().to_string();
    assert!(error.contains("redis.queue"), "{error}");
    assert!(error.contains("{core:apalis:queues:list}"), "{error}");
    settings.redis.queue = QUEUE.into();
    settings.validate().unwrap();

    // Why: the script apalis-redis registers workers with writes the
    // registry key without declaring it. With `--cluster create`'s slot
    // layout the default queue's slot and the registry key's slot are
    // served by different nodes, and Redis refuses the script.
    let cluster = start();
    let workers_key = "{tokenwarden}:refresh:workers";
    let keyslot = |key: &str| cluster.primaries[0].cli(&["CLUSTER", "KEYSLOT", key]);
    assert_ne!(keyslot(workers_key), keyslot(APALIS_QUEUES_KEY));
    let script = format!(
        "redis.call('zadd', KEYS[1], 1, 'w'); redis.call('zadd', '{APALIS_QUEUES_KEY}', 1, KEYS[1]); return 1"
    );
    let answers: Vec<String> = cluster
        .primaries
        .iter()
        .map(|p| {
            let output = std::process::Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &p.port.to_string()])
                .args(["EVAL", &script, "1", workers_key])
                .output()
                .unwrap();
            String::from_utf8_lossy(&output.stdout).into_owned()
        })
        .collect();
    // The node serving the queue refuses the script; the others redirect.
    let refused = answers
        .iter()
        .filter(|a| a.contains("Script attempted to access a non local key"))
        .count();
    let moved = answers.iter().filter(|a| a.starts_with("MOVED")).count();
    assert_eq!((refused, moved), (1, 2), "{answers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_continue_after_the_queues_primary_is_killed_and_its_replica_promoted() {
    let mut cluster = start();
    let urls: Vec<String> = cluster
        .primaries
        .iter()
        .map(|p| format!("redis://127.0.0.1:{}", p.port))
        .collect();
    let url = urls.join(",");
    let env = TestEnv::with(|s| {
        tune(s, &url);
        s.redis.mode = RedisMode::Cluster;
        s.redis.queue = QUEUE.into();
    })
    .await;
    env.settings.validate().unwrap();
    let mut seeded = seed(&env, "before", 30).await;
    let daemon = Daemon::start(&env, QUEUE);
    wait_until_refreshed(&env, 30, Duration::from_secs(60)).await;

    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.primaries[cluster.queue_primary].kill();
    let killed = Instant::now();
    seeded.extend(seed(&env, "after", 30).await);
    let first_after = loop {
        if refreshed(&env).await > 30 {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(90),
            "no refresh within 90 s of the primary's death"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    wait_until_refreshed(&env, 60, Duration::from_secs(90)).await;
    let all_after = killed.elapsed();
    eprintln!(
        "cluster failover: first refresh {first_after:?} after the primary died, all 30 after {all_after:?}"
    );
    assert!(
        cluster.replica.cli(&["ROLE"]).starts_with("master"),
        "the replica was promoted"
    );
    daemon.stop().await;
    assert_each_refreshed_exactly_once(&env, &seeded).await;
}
