//! Claiming 1,000 due rows out of a large table: the scheduler's scan where
//! most accounts are planned far ahead.

use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::fixture::schema_url;

/// Claiming 1,000 due rows out of a large table, median of five claims.
pub async fn claim_timing(admin: &PgPool, rows: i64) -> anyhow::Result<()> {
    let schema = format!("tw_bench_claim_{:08x}", rand::random::<u32>());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(admin)
        .await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&schema_url(&schema))
        .await?;
    let result = async {
        tokenwarden::store::migrate(&pool).await?;
        let started = Instant::now();
        // Most rows are planned in the future; 1 % are due.
        sqlx::query(
            "WITH a AS (
                 INSERT INTO social_accounts (id, workspace_id, provider, external_id, token_expires_at)
                 SELECT 'acc_' || lpad(to_hex(g), 32, '0'), 'ws', 'X', g::text, now() + interval '1 day'
                 FROM generate_series(1, $1) g
                 RETURNING id, external_id::int8 AS g)
             INSERT INTO account_schedule (account_id, next_attempt_at)
             SELECT id, CASE WHEN g % 100 = 0 THEN now() - interval '1 minute'
                             ELSE now() + (g % 86400) * interval '1 second' END
             FROM a",
        )
        .bind(rows)
        .execute(&pool)
        .await?;
        sqlx::query("ANALYZE social_accounts, account_schedule").execute(&pool).await?;
        println!("claim table: {rows} rows in {:.0} s", started.elapsed().as_secs_f64());
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let claimed = tokenwarden::store::scheduling::claim_due(&pool, "bench", 1_000, Duration::from_secs(120)).await?;
            times.push(t.elapsed());
            anyhow::ensure!(claimed.len() == 1_000, "claimed {}", claimed.len());
        }
        times.sort();
        println!("claiming 1,000 due rows of {rows}: median {:.1} ms (min {:.1}, max {:.1})",
            times[2].as_secs_f64() * 1e3, times[0].as_secs_f64() * 1e3, times[4].as_secs_f64() * 1e3);
        anyhow::Ok(())
    }
    .await;
    pool.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(admin)
        .await?;
    result
}
