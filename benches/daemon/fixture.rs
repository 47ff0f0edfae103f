//! The benchmark's schema: accounts with live token families at the fake
//! platform, the plan of when each falls due, and the resets between runs.

use std::time::Duration;

use base64::Engine as _;
use chrono::{TimeDelta, Utc};
use secrecy::SecretString;
use sqlx::PgPool;
use tokenwarden::crypto::{Field, Keyring};
use tokenwarden::domain::AccountId;
use tokenwarden_fakes::{FakeOAuthServer, FamilySpec};

pub fn database_url() -> String {
    std::env::var("TOKENWARDEN_TEST_DATABASE_URL").unwrap_or_else(|_| {
        "postgres://tokenwarden:tokenwarden@127.0.0.1:5432/tokenwarden_test".into()
    })
}

pub fn schema_url(schema: &str) -> String {
    let base = database_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

pub struct Fixture {
    pub schema: String,
    pub pool: PgPool,
    pub fake: FakeOAuthServer,
    pub key_spec: String,
    keyring: Keyring,
    /// Accounts seeded so far; account n (0-based) is row n of bench_plan.
    pub seeded: usize,
}

impl Fixture {
    pub async fn create(schema: &str) -> anyhow::Result<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect(&schema_url(schema))
            .await?;
        tokenwarden::store::migrate(&pool).await?;
        sqlx::raw_sql(
            "CREATE TABLE bench_plan (n BIGINT PRIMARY KEY, id TEXT NOT NULL,
                 planned_at TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ NOT NULL)",
        )
        .execute(&pool)
        .await?;
        sqlx::raw_sql(crate::pgbench::MINIMAL_TABLES)
            .execute(&pool)
            .await?;
        let key_spec = format!(
            "b1:{}",
            base64::engine::general_purpose::STANDARD.encode([3u8; 32])
        );
        Ok(Self {
            schema: schema.to_owned(),
            keyring: Keyring::parse(&SecretString::from(key_spec.clone()))?,
            key_spec,
            fake: FakeOAuthServer::start("bench", "bench-secret").await?,
            pool,
            seeded: 0,
        })
    }

    /// Adds `count` accounts in bulk (the registration path is measured by
    /// the engine bench), each with a live token family at the fake and
    /// nothing planned, so they wait until a run makes them due.
    pub async fn seed(&mut self, count: usize) -> anyhow::Result<()> {
        let now = Utc::now();
        let expires = now + TimeDelta::days(1);
        let end = self.seeded + count;
        for chunk_start in (self.seeded..end).step_by(5_000) {
            let chunk_end = (chunk_start + 5_000).min(end);
            let (mut ns, mut ids, mut ats, mut rts) = (vec![], vec![], vec![], vec![]);
            for n in chunk_start..chunk_end {
                let tokens = self.fake.issue(FamilySpec::default());
                let id = AccountId::generate();
                ats.push(
                    self.keyring
                        .encrypt(&id, Field::AccessToken, &tokens.access_token),
                );
                rts.push(
                    self.keyring
                        .encrypt(&id, Field::RefreshToken, &tokens.refresh_token),
                );
                ns.push(n as i64);
                ids.push(id.to_string());
            }
            sqlx::query(
                "WITH a AS (
                     INSERT INTO social_accounts (id, workspace_id, provider, external_id, token_issued_at,
                         token_expires_at, access_token_ciphertext, refresh_token_ciphertext, credentials_key_id)
                     SELECT u.id, 'ws_bench', 'X', u.id, $3 - interval '1 hour', $4, u.at, u.rt, 'b1'
                     FROM unnest($1::text[], $2::bytea[], $5::bytea[]) AS u(id, at, rt)
                     RETURNING id, token_expires_at)
                 INSERT INTO account_schedule (account_id, access_expires_at)
                 SELECT id, token_expires_at FROM a",
            )
            .bind(&ids)
            .bind(&ats)
            .bind(now)
            .bind(expires)
            .bind(&rts)
            .execute(&self.pool)
            .await?;
            sqlx::query(
                "INSERT INTO bench_plan SELECT u.n, u.id, $3, $4
                 FROM unnest($1::bigint[], $2::text[]) AS u(n, id)",
            )
            .bind(&ns)
            .bind(&ids)
            .bind(now)
            .bind(expires)
            .execute(&self.pool)
            .await?;
        }
        self.seeded = end;
        // Autovacuum may be off: without this the planner works from the
        // statistics of an empty table.
        sqlx::raw_sql("ANALYZE social_accounts, bench_plan")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Puts the schema back into the same state before every measured run:
    /// nothing due, no attempt rows, and the dead row versions of the last
    /// run vacuumed (autovacuum may be off), so rounds stay comparable.
    pub async fn settle(&self) -> anyhow::Result<()> {
        sqlx::raw_sql(
            "UPDATE account_schedule SET next_attempt_at = NULL, claim_id = NULL, claimed_at = NULL,
                 claimed_by = NULL
             WHERE next_attempt_at IS NOT NULL OR claim_id IS NOT NULL;
             UPDATE social_accounts SET consecutive_failures = 0 WHERE consecutive_failures <> 0;
             TRUNCATE refresh_attempts, account_events, bench_min_attempt;
             -- Counted now, not in the middle of the next run's figures.
             SELECT pg_stat_force_next_flush();",
        )
        .execute(&self.pool)
        .await?;
        sqlx::raw_sql(
            "VACUUM ANALYZE social_accounts, account_schedule, refresh_attempts, account_events, bench_plan,
                 bench_min_account, bench_min_attempt",
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The first `count` accounts fall due now, all in one commit, two
    /// thirds into their token's lifetime. Returns the row updates counted
    /// so far, this commit's included.
    pub async fn make_due_now(&self, count: usize) -> anyhow::Result<RowUpdates> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query(
            "WITH a AS (
                 UPDATE social_accounts a
                 SET token_issued_at = now() - interval '40 minutes', token_expires_at = now() + interval '20 minutes'
                 FROM bench_plan p WHERE p.id = a.id AND p.n < $1
                 RETURNING a.id, a.token_expires_at)
             UPDATE account_schedule s SET next_attempt_at = now(), access_expires_at = a.token_expires_at
             FROM a WHERE s.account_id = a.id",
        )
        .bind(count as i64)
        .execute(&mut *conn)
        .await?;
        // A backend hands its counts to the statistics only now and then;
        // this one does before its next statement.
        sqlx::query("SELECT pg_stat_force_next_flush()")
            .execute(&mut *conn)
            .await?;
        self.row_updates(&mut conn).await
    }

    /// Row updates of the account and schedule tables so far, as the
    /// statistics hold them (a backend's counts arrive by its exit at the
    /// latest).
    pub async fn row_updates(&self, conn: &mut sqlx::PgConnection) -> anyhow::Result<RowUpdates> {
        let counts: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT relname::text, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
             WHERE schemaname = $1 AND relname IN ('social_accounts', 'account_schedule')",
        )
        .bind(&self.schema)
        .fetch_all(conn)
        .await?;
        let of = |table: &str| {
            counts
                .iter()
                .find(|(name, _, _)| name == table)
                .map_or((0, 0), |(_, all, hot)| (*all, *hot))
        };
        Ok(RowUpdates {
            accounts: of("social_accounts"),
            schedule: of("account_schedule"),
        })
    }

    /// The first `count` accounts fall due one after another at `rate` per
    /// second, starting `lead` from now. Returns the span of the plan.
    pub async fn plan_steady(
        &self,
        count: usize,
        rate: f64,
        lead: Duration,
    ) -> anyhow::Result<Duration> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE bench_plan SET planned_at = now() + make_interval(secs => $2 + n / $3),
                 expires_at = now() + make_interval(secs => $2 + n / $3) + interval '20 minutes'
             WHERE n < $1",
        )
        .bind(count as i64)
        .bind(lead.as_secs_f64())
        .bind(rate)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "WITH a AS (
                 UPDATE social_accounts a SET token_expires_at = p.expires_at,
                     token_issued_at = p.planned_at - interval '40 minutes'
                 FROM bench_plan p WHERE p.id = a.id AND p.n < $1
                 RETURNING a.id, a.token_expires_at, p.planned_at)
             UPDATE account_schedule s SET next_attempt_at = a.planned_at, access_expires_at = a.token_expires_at
             FROM a WHERE s.account_id = a.id",
        )
        .bind(count as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Duration::from_secs_f64(count as f64 / rate))
    }

    pub async fn refreshed(&self) -> anyhow::Result<usize> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM refresh_attempts WHERE outcome = 'refreshed'")
                .fetch_one(&self.pool)
                .await?;
        Ok(n as usize)
    }

    /// (started, finished) of every refresh since the last settle, in
    /// seconds since the epoch, as PostgreSQL recorded them.
    pub async fn refresh_times(&self) -> anyhow::Result<Vec<(f64, f64)>> {
        Ok(sqlx::query_as(
            "SELECT extract(epoch FROM started_at)::float8, extract(epoch FROM finished_at)::float8
             FROM refresh_attempts WHERE outcome = 'refreshed'",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Lateness of the first refresh of each of the first `count` accounts
    /// against its plan: p50, p99 and max in seconds, and how many tokens
    /// were not refreshed before they expired.
    pub async fn lateness(&self, count: usize) -> anyhow::Result<Lateness> {
        let (p50, p99, max, expired): (Option<f64>, Option<f64>, Option<f64>, i64) =
            sqlx::query_as(
                "WITH first AS (
                     SELECT account_id, min(started_at) AS at FROM refresh_attempts
                     WHERE outcome = 'refreshed' GROUP BY account_id)
                 SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM f.at - p.planned_at))::float8,
                        percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM f.at - p.planned_at))::float8,
                        max(extract(epoch FROM f.at - p.planned_at))::float8,
                        count(*) FILTER (WHERE f.at IS NULL OR f.at > p.expires_at)
                 FROM bench_plan p LEFT JOIN first f ON f.account_id = p.id
                 WHERE p.n < $1",
            )
            .bind(count as i64)
            .fetch_one(&self.pool)
            .await?;
        let nan = f64::NAN;
        Ok(Lateness {
            p50: p50.unwrap_or(nan),
            p99: p99.unwrap_or(nan),
            max: max.unwrap_or(nan),
            expired: expired as usize,
        })
    }
}

/// Row updates counted by PostgreSQL: (all, heap-only) per table. A
/// heap-only (HOT) update writes no index entry.
#[derive(Clone, Copy, Debug, Default)]
pub struct RowUpdates {
    pub accounts: (i64, i64),
    pub schedule: (i64, i64),
}

impl RowUpdates {
    /// Per refresh since `before`: (updates, share of them heap-only) of
    /// the account row and of the schedule row.
    pub fn per_refresh(&self, before: &RowUpdates, refreshed: usize) -> [(f64, f64); 2] {
        let per = |now: (i64, i64), then: (i64, i64)| {
            let (all, hot) = (now.0 - then.0, now.1 - then.1);
            (
                all as f64 / refreshed.max(1) as f64,
                hot as f64 / all.max(1) as f64,
            )
        };
        [
            per(self.accounts, before.accounts),
            per(self.schedule, before.schedule),
        ]
    }
}

pub struct Lateness {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub expired: usize,
}
