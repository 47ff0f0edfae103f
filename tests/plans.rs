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
const LARGE: &[&str] = &[
    "social_accounts",
    "account_schedule",
    "refresh_attempts",
    "account_events",
];

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

/// How often a node runs and how much of it is read.
#[derive(Clone, Copy)]
struct Reach {
    /// Once per row of an enclosing nested loop (or correlated subquery).
    per_row: bool,
    /// Below a LIMIT, which stops reading when the batch is full.
    limited: bool,
}

/// The large table a scan node reads, if any (a bitmap index scan names
/// only its index, which is named after its table).
fn large_table(node: &Value) -> Option<&'static str> {
    let relation = node["Relation Name"].as_str();
    let index = node["Index Name"].as_str().unwrap_or_default();
    LARGE
        .iter()
        .copied()
        .find(|table| relation == Some(*table) || (relation.is_none() && index.starts_with(table)))
}

/// What is wrong with the plan below `node`.
fn faults(node: &Value, reach: Reach, found: &mut Vec<String>) {
    let kind = node["Node Type"].as_str().unwrap_or_default();
    let relation = node["Relation Name"].as_str().unwrap_or_default();
    let what = match relation {
        "" => kind.to_owned(),
        _ => format!("{kind} on {relation}"),
    };
    let index = node["Index Name"].as_str().unwrap_or_default();
    let index_scan = kind.starts_with("Index") || kind == "Bitmap Index Scan";
    let condition = node["Index Cond"].as_str();
    if let Some(table) = large_table(node).filter(|_| !BOUNDED.contains(&index)) {
        if kind == "Seq Scan" || (index_scan && condition.is_none()) {
            found.push(format!("reads all of {table}"));
        }
        // A key is an equality; anything else reads a range of the table.
        let range = index_scan && condition.is_some_and(|c| !c.contains(" = "));
        if range && reach.per_row {
            found.push(format!(
                "reads a range of {table} once per row of a nested loop"
            ));
        }
        if range && !reach.per_row && !reach.limited {
            found.push(format!(
                "reads an open-ended range of {table} under no limit"
            ));
        }
    }
    if reach.per_row && NOT_PER_ROW.contains(&kind) {
        found.push(format!("{what} runs once per row of a nested loop"));
    }
    // A lookup of the whole batch's keys, run once per row of the batch.
    let lookup = condition.or(node["Recheck Cond"].as_str());
    if reach.per_row && lookup.is_some_and(|c| c.contains("ANY (")) {
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
        let per_row = match relationship {
            // Run once for the statement.
            "InitPlan" => false,
            // A correlated subquery runs once per row of its node.
            "SubPlan" => true,
            "Inner" if kind == "Nested Loop" => reach.per_row || !loops_once,
            _ => reach.per_row,
        };
        let limited = match relationship {
            "InitPlan" | "SubPlan" => kind == "Limit",
            _ => reach.limited || kind == "Limit",
        };
        faults(child, Reach { per_row, limited }, found);
    }
}

/// `faults` of a whole plan.
fn plan_faults(plan: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let top = Reach {
        per_row: false,
        limited: false,
    };
    faults(&plan[0]["Plan"], top, &mut found);
    found
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
        let found = plan_faults(&plan);
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
    assert_eq!(
        plan_faults(&serde_json::json!([{ "Plan": plan }])),
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
    let quadratic = "WITH input AS MATERIALIZED (
             SELECT * FROM unnest($1::text[], $2::uuid[]) AS i(id, claim))
         UPDATE account_schedule s SET claim_id = NULL
         WHERE s.account_id = ANY(ARRAY(SELECT id FROM input))
           AND s.claim_id = (SELECT claim FROM input i WHERE i.id = s.account_id LIMIT 1)";
    let (found, plan) = faults_of(quadratic).await;
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
    assert_eq!(
        plan_faults(&serde_json::json!([{ "Plan": plan }])),
        vec!["reads all of social_accounts"]
    );
}

/// The faults the check finds in the generic plan of `sql`, on 2,000
/// accounts with fresh statistics.
async fn faults_of(sql: &str) -> (Vec<String>, Value) {
    let env = TestEnv::new().await;
    add_accounts(&env, 1, 2_000).await;
    analyze(&env).await;
    let mut conn = env.pool().acquire().await.unwrap();
    sqlx::raw_sql("SET plan_cache_mode = force_generic_plan")
        .execute(&mut *conn)
        .await
        .unwrap();
    let plan = generic_plan(&mut conn, sql).await;
    (plan_faults(&plan), plan)
}

/// A range scan of an account table run once per row of the batch reads a
/// share of the table per row (here an estimated ninth of the schedule per
/// row): the batch costs its size times the table's. Its inner side has an
/// index condition, but not a key: the check must not take any index
/// condition for a keyed lookup.
#[tokio::test]
async fn a_range_scan_per_row_of_the_batch_is_found() {
    let per_row_range = "UPDATE account_schedule s SET claim_id = NULL
         FROM unnest($1::timestamptz[], $2::timestamptz[]) AS i(lo, hi)
         WHERE s.dead_at >= i.lo AND s.dead_at < i.hi";
    let (found, plan) = faults_of(per_row_range).await;
    assert!(
        !found.is_empty(),
        "an index range scan of account_schedule per row of the batch passed the check:\n{plan:#}"
    );
}

/// An open-ended range of an account table's index, outside any loop and
/// under no limit, reads as much of the table as the range covers (all of
/// it, once every account is past the bound): a whole-table read that has
/// an index condition.
#[tokio::test]
async fn an_unbounded_range_scan_of_an_account_table_is_found() {
    let unbounded = "UPDATE account_schedule SET dead_at = NULL
         WHERE dead_at <= now() + make_interval(secs => $1)";
    let (found, plan) = faults_of(unbounded).await;
    assert!(
        !found.is_empty(),
        "an unbounded range scan of account_schedule passed the check:\n{plan:#}"
    );
}
