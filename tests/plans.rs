//! The plans of the statements that work on a batch of accounts
//! (`store::batch_statements`). A prepared statement settles on a generic
//! plan, which estimates every array parameter at ten elements; two row
//! sets both estimated small are then joined in a nested loop that rescans
//! one for every row of the other, and the batch costs its size squared.
//! The result commit once did exactly that with its locking step, and it
//! was most of PostgreSQL's time per refresh. Times are for benchmarks;
//! this checks the shape: inside a nested loop, the side run once per row
//! is a keyed lookup, and no batch statement reads a whole account table.

mod common;

use common::TestEnv;
use serde_json::Value;
use sqlx::PgConnection;

/// Node types that, run once per row of a nested loop's outer side, make
/// the loop quadratic in the batch (or worse).
const NOT_PER_ROW: &[&str] = &[
    "CTE Scan",
    "Function Scan",
    "Seq Scan",
    "Materialize",
    "Sort",
    "Nested Loop",
    "Hash Join",
    "Merge Join",
];

/// Tables whose size grows with the accounts.
const LARGE: &[&str] = &["social_accounts", "account_schedule", "refresh_attempts"];

/// Partial indexes of those tables that hold a bounded set: the outstanding
/// claims (at most `scheduler.max_outstanding`). Reading one whole is not
/// reading the table.
const BOUNDED: &[&str] = &["account_schedule_claimed"];

/// Whether `node` yields one row at most: an aggregate without groups (as
/// the batch's arrays are built), seen through the nodes that pass rows on.
fn single_row(node: &Value) -> bool {
    match node["Node Type"].as_str().unwrap_or_default() {
        "Aggregate" => node["Strategy"] == "Plain",
        "Subquery Scan" | "Result" => node["Plans"]
            .as_array()
            .is_some_and(|children| children.len() == 1 && single_row(&children[0])),
        _ => false,
    }
}

/// What is wrong with the plan below `node`; `per_row`: `node` runs once
/// per row of an enclosing nested loop.
fn faults(node: &Value, per_row: bool, found: &mut Vec<String>) {
    let kind = node["Node Type"].as_str().unwrap_or_default();
    let relation = node["Relation Name"].as_str().unwrap_or_default();
    let what = match relation {
        "" => kind.to_owned(),
        _ => format!("{kind} on {relation}"),
    };
    let index = node["Index Name"].as_str().unwrap_or_default();
    let unkeyed_index_scan =
        kind.starts_with("Index") && node["Index Cond"].is_null() && !BOUNDED.contains(&index);
    if LARGE.contains(&relation) && (kind == "Seq Scan" || unkeyed_index_scan) {
        found.push(format!("reads all of {relation}"));
    }
    if per_row && NOT_PER_ROW.contains(&kind) {
        found.push(format!("{what} runs once per row of a nested loop"));
    }
    // A lookup of the whole batch's keys, run once per row of the batch.
    let condition = node["Index Cond"]
        .as_str()
        .or(node["Recheck Cond"].as_str());
    if per_row && condition.is_some_and(|c| c.contains("ANY (")) {
        found.push(format!(
            "{what} looks up every key of the batch once per row of a nested loop"
        ));
    }
    let children = node["Plans"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    // A loop over one row runs its inner side once.
    let loops_once = kind == "Nested Loop" && children.first().is_some_and(single_row);
    for child in children {
        let relationship = child["Parent Relationship"].as_str().unwrap_or_default();
        let child_per_row = match relationship {
            // Run once for the statement.
            "InitPlan" => false,
            // A correlated subquery runs once per row of its node.
            "SubPlan" => true,
            "Inner" if kind == "Nested Loop" => per_row || !loops_once,
            _ => per_row,
        };
        faults(child, child_per_row, found);
    }
}

/// The highest `$n` in `sql`.
fn parameters(sql: &str) -> usize {
    sql.split('$')
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .max()
        .unwrap_or(0)
}

/// The generic plan of `sql`, as a prepared statement would run it.
async fn generic_plan(conn: &mut PgConnection, sql: &str) -> Value {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "PREPARE batch_statement AS {sql}"
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    let nulls = vec!["NULL"; parameters(sql)].join(", ");
    let (plan,): (Value,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (FORMAT JSON) EXECUTE batch_statement({nulls})"
    )))
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    sqlx::raw_sql("DEALLOCATE batch_statement")
        .execute(&mut *conn)
        .await
        .unwrap();
    plan
}

async fn assert_keyed_plans(env: &TestEnv, statistics: &str) {
    let mut conn = env.pool().acquire().await.unwrap();
    sqlx::raw_sql("SET plan_cache_mode = force_generic_plan")
        .execute(&mut *conn)
        .await
        .unwrap();
    let mut wrong = Vec::new();
    for (name, sql) in tokenwarden::store::batch_statements() {
        let plan = generic_plan(&mut conn, sql).await;
        let mut found = Vec::new();
        faults(&plan[0]["Plan"], false, &mut found);
        if !found.is_empty() {
            wrong.push(format!("{name}: {found:?}\n{plan:#}"));
        }
    }
    assert!(wrong.is_empty(), "with {statistics}:\n{}", wrong.join("\n"));
    sqlx::raw_sql("RESET plan_cache_mode")
        .execute(&mut *conn)
        .await
        .unwrap();
}

/// Adds accounts `from..=to` of every kind the statements look for, in a
/// running daemon's proportions: 3 % due, 0.5 % claimed, 1 % leased, 1 %
/// dead by time, one attempt each.
async fn add_accounts(env: &TestEnv, from: i64, to: i64) {
    sqlx::query(
        "WITH a AS (
             INSERT INTO social_accounts (id, workspace_id, provider, external_id,
                 token_issued_at, token_expires_at, refresh_token_expires_at,
                 access_token_ciphertext, refresh_token_ciphertext, credentials_key_id,
                 lease_owner, lease_until)
             SELECT 'acc_plan' || g, 'ws-' || g % 50, 'X', 'ext-' || g, now() - interval '1 hour',
                    now() + g * interval '1 second',
                    CASE WHEN g % 100 = 0 THEN now() - interval '1 minute'
                         WHEN g % 10 = 0 THEN now() + g * interval '1 minute' END,
                    '\\x00', '\\x00', 'k1',
                    CASE WHEN g % 100 = 7 THEN 'elsewhere' END,
                    CASE WHEN g % 100 = 7 THEN now() + interval '1 minute' END
             FROM generate_series($1::int8, $2::int8) g
             RETURNING id, token_expires_at, refresh_token_expires_at),
         s AS (
             INSERT INTO account_schedule (account_id, next_attempt_at, claim_id, claimed_at,
                 access_expires_at, dead_at)
             SELECT id, token_expires_at - interval '10 minutes',
                    CASE WHEN right(id, 3) = '003' THEN gen_random_uuid() END,
                    CASE WHEN right(id, 3) = '003' THEN now() END,
                    token_expires_at, refresh_token_expires_at
             FROM a)
         INSERT INTO refresh_attempts (account_id, provider, trigger, started_at, finished_at,
             outcome, duration_ms)
         SELECT id, 'X', 'scheduled', now(), now(), 'refreshed', 1 FROM a",
    )
    .bind(from)
    .bind(to)
    .execute(env.pool())
    .await
    .unwrap();
}

async fn analyze(env: &TestEnv) {
    sqlx::raw_sql("ANALYZE social_accounts, account_schedule, refresh_attempts")
        .execute(env.pool())
        .await
        .unwrap();
}

/// Statistics taken when the tables were small and never refreshed as they
/// grew (autovacuum off, or behind), then statistics of their full size.
#[tokio::test]
async fn batch_statements_keep_keyed_plans_on_stale_and_fresh_statistics() {
    let env = TestEnv::new().await;
    add_accounts(&env, 1, 20).await;
    analyze(&env).await;
    add_accounts(&env, 21, 20_000).await;
    assert_keyed_plans(&env, "statistics of 20 accounts, 20,000 present").await;
    analyze(&env).await;
    assert_keyed_plans(&env, "statistics of 20,000 accounts").await;
}

/// The check itself: the shape of the result commit before its fix is found.
#[test]
fn a_locking_subquery_rescanned_per_row_is_found() {
    let plan: Value = serde_json::json!({
        "Node Type": "Nested Loop",
        "Plans": [
            {"Node Type": "CTE Scan", "Parent Relationship": "Outer"},
            {"Node Type": "Subquery Scan", "Parent Relationship": "Inner", "Plans": [
                {"Node Type": "LockRows", "Parent Relationship": "Outer", "Plans": [
                    {"Node Type": "Index Scan", "Relation Name": "social_accounts",
                     "Index Cond": "(id = ANY ($1))", "Parent Relationship": "Outer"}
                ]}
            ]}
        ]
    });
    let mut found = Vec::new();
    faults(&plan, false, &mut found);
    assert_eq!(
        found,
        vec![
            "Index Scan on social_accounts looks up every key of the batch once per row of a nested loop"
        ]
    );
    assert_eq!(parameters("SELECT $1, $12::text[], $3"), 12);
}

/// A correlated SubPlan runs once per row of the node it hangs on, as the
/// inner side of a nested loop does: this statement rescans the whole batch
/// (a CTE) for each row it updates, and the check finds it.
#[tokio::test]
async fn a_subplan_rescanning_the_batch_per_row_is_found() {
    let env = TestEnv::new().await;
    add_accounts(&env, 1, 2_000).await;
    analyze(&env).await;
    let mut conn = env.pool().acquire().await.unwrap();
    sqlx::raw_sql("SET plan_cache_mode = force_generic_plan")
        .execute(&mut *conn)
        .await
        .unwrap();
    let quadratic = "WITH input AS MATERIALIZED (
             SELECT * FROM unnest($1::text[], $2::uuid[]) AS i(id, claim))
         UPDATE account_schedule s SET claim_id = NULL
         WHERE s.account_id = ANY(ARRAY(SELECT id FROM input))
           AND s.claim_id = (SELECT claim FROM input i WHERE i.id = s.account_id LIMIT 1)";
    let plan = generic_plan(&mut conn, quadratic).await;
    let mut found = Vec::new();
    faults(&plan[0]["Plan"], false, &mut found);
    assert!(
        !found.is_empty(),
        "a CTE Scan of the batch per updated row passed the check:\n{plan:#}"
    );
}

/// A full index scan (no index condition) of an account table, as a merge
/// join reads it, reads the whole table as a Seq Scan does.
#[test]
fn a_full_index_scan_of_the_account_table_is_found() {
    let plan: Value = serde_json::json!({
        "Node Type": "Merge Join",
        "Plans": [
            {"Node Type": "Sort", "Parent Relationship": "Outer", "Plans": [
                {"Node Type": "Function Scan", "Parent Relationship": "Outer"}
            ]},
            {"Node Type": "Index Scan", "Relation Name": "social_accounts",
             "Index Name": "social_accounts_pkey", "Parent Relationship": "Inner"}
        ]
    });
    let mut found = Vec::new();
    faults(&plan, false, &mut found);
    assert_eq!(found, vec!["reads all of social_accounts"]);
}
