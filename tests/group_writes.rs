//! Group commit and group leasing against real PostgreSQL: requests that
//! arrive together share one transaction, and each still gets its own
//! answer — applied, fenced out, refused by the database; lease taken,
//! taken over, or held elsewhere.

mod common;

use chrono::{TimeDelta, Utc};
use common::{TestEnv, new_account};
use futures::future::join_all;
use tokenwarden::crypto::Field;
use tokenwarden::domain::{AccountId, AccountStatus, Outcome, Provider, Trigger};
use tokenwarden::policy::RefreshPolicy;
use tokenwarden::store::accounts::{self, AccountRow};
use tokenwarden::store::attempts::NewAttempt;
use tokenwarden::store::refresh::{GroupCommit, GroupLease, NewCredentials};
use tokenwarden_fakes::IssuedTokens;

async fn accounts(env: &TestEnv, count: usize) -> Vec<AccountRow> {
    let policy = RefreshPolicy::from(env.settings.providers.get(Provider::X));
    let mut rows = Vec::new();
    for n in 0..count {
        let tokens = IssuedTokens {
            access_token: format!("at-{n}"),
            refresh_token: format!("rt-{n}"),
            expires_in: 300,
        };
        let new = new_account(
            Provider::X,
            &format!("ext-{n}"),
            &tokens,
            Utc::now() - TimeDelta::hours(1),
            Some(Utc::now() + TimeDelta::minutes(5)),
        );
        let id = accounts::register(env.pool(), &env.keyring, &policy, &new)
            .await
            .unwrap()
            .account
            .id;
        rows.push(env.row(&id).await);
    }
    rows
}

fn credentials(env: &TestEnv, id: &AccountId, access: &str) -> NewCredentials {
    let now = Utc::now();
    NewCredentials {
        access_token_ciphertext: env.keyring.encrypt(id, Field::AccessToken, access),
        refresh_token_ciphertext: Some(env.keyring.encrypt(id, Field::RefreshToken, "rt-new")),
        key_id: env.keyring.primary_key_id().to_owned(),
        issued_at: now,
        expires_at: Some(now + TimeDelta::hours(2)),
        refresh_token_expires_at: None,
        granted_scopes: Some(vec!["tweet.write".into(), "offline.access".into()]),
        missing_scopes: Some(vec![]),
        next_attempt_at: Some(now + TimeDelta::hours(1)),
        dead_at: None,
        dpop_key_ciphertext: None,
        account: tokenwarden::providers::AccountState::Unreported,
    }
}

fn attempt(message: Option<&str>) -> NewAttempt {
    NewAttempt {
        trigger: Trigger::Scheduled,
        started_at: Utc::now() - TimeDelta::milliseconds(40),
        finished_at: Utc::now(),
        outcome: Outcome::Refreshed,
        http_status: None,
        provider_error_code: None,
        message: message.map(str::to_owned),
    }
}

async fn attempts_of(env: &TestEnv, id: &AccountId) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM refresh_attempts WHERE account_id = $1")
        .bind(id.as_str())
        .fetch_one(env.pool())
        .await
        .unwrap()
}

// The default test runtime has one thread: every write below is queued
// before the flusher first runs, so they meet in one batch.
#[tokio::test]
async fn writes_that_arrive_together_share_one_transaction_and_keep_their_own_answers() {
    let env = TestEnv::new().await;
    let rows = accounts(&env, 40).await;
    let group = GroupCommit::start(env.pool().clone(), "engine-a".into());
    // Every fourth write carries a stale credentials version: fenced out.
    let leased: Vec<AccountRow> = rows
        .iter()
        .enumerate()
        .map(|(n, row)| {
            let mut row = row.clone();
            if n % 4 == 0 {
                row.credentials_version -= 1;
            }
            row
        })
        .collect();
    let writes = leased.iter().enumerate().map(|(n, row)| {
        let credentials = credentials(&env, &row.id, &format!("new-at-{n}"));
        let group = group.clone();
        async move {
            group
                .commit_refreshed(row, &attempt(None), &credentials)
                .await
        }
    });
    let answers = join_all(writes).await;

    assert_eq!(group.flushes(), 1, "40 writes queued together: one flush");
    for (n, (row, answer)) in rows.iter().zip(answers).enumerate() {
        let after = env.row(&row.id).await;
        if n % 4 == 0 {
            assert_eq!(answer.unwrap(), None, "account {n} was fenced out");
            assert_eq!(after.credentials_version, row.credentials_version);
            assert_eq!(env.stored_access_token(&row.id).await, format!("at-{n}"));
            assert_eq!(attempts_of(&env, &row.id).await, 0);
        } else {
            assert_eq!(answer.unwrap(), Some(AccountStatus::Active), "account {n}");
            assert_eq!(after.credentials_version, row.credentials_version + 1);
            assert_eq!(
                env.stored_access_token(&row.id).await,
                format!("new-at-{n}")
            );
            assert_eq!(env.stored_refresh_token(&row.id).await.unwrap(), "rt-new");
            assert_eq!(after.granted_scopes, ["tweet.write", "offline.access"]);
            assert!(after.missing_scopes.is_empty());
            assert_eq!(attempts_of(&env, &row.id).await, 1);
        }
    }
}

#[tokio::test]
async fn a_row_the_database_refuses_fails_alone() {
    let env = TestEnv::new().await;
    let rows = accounts(&env, 6).await;
    let group = GroupCommit::start(env.pool().clone(), "engine-a".into());
    let writes = rows.iter().enumerate().map(|(n, row)| {
        let credentials = credentials(&env, &row.id, &format!("new-at-{n}"));
        // PostgreSQL refuses a NUL byte in text (SQLSTATE 22021).
        let message = (n == 2).then_some("a note with a \0 byte");
        let group = group.clone();
        async move {
            group
                .commit_refreshed(row, &attempt(message), &credentials)
                .await
        }
    });
    let answers = join_all(writes).await;
    for (n, (row, answer)) in rows.iter().zip(answers).enumerate() {
        if n == 2 {
            let error = answer.unwrap_err();
            let code = error.as_database_error().and_then(|e| e.code());
            assert_eq!(code.as_deref(), Some("22021"), "{error}");
            assert_eq!(env.stored_access_token(&row.id).await, "at-2");
        } else {
            assert_eq!(answer.unwrap(), Some(AccountStatus::Active), "account {n}");
            assert_eq!(
                env.stored_access_token(&row.id).await,
                format!("new-at-{n}")
            );
        }
    }
}

#[tokio::test]
async fn two_writes_for_one_account_in_a_burst_apply_once() {
    let env = TestEnv::new().await;
    let rows = accounts(&env, 3).await;
    let group = GroupCommit::start(env.pool().clone(), "engine-a".into());
    let twice = [&rows[0], &rows[1], &rows[0], &rows[2]];
    let writes = twice.iter().enumerate().map(|(n, row)| {
        let credentials = credentials(&env, &row.id, &format!("new-at-{n}"));
        let group = group.clone();
        async move {
            group
                .commit_refreshed(row, &attempt(None), &credentials)
                .await
        }
    });
    let answers: Vec<_> = join_all(writes)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        answers,
        [
            Some(AccountStatus::Active),
            Some(AccountStatus::Active),
            None, // the same leased version again: fenced by the first write
            Some(AccountStatus::Active),
        ]
    );
    assert_eq!(env.stored_access_token(&rows[0].id).await, "new-at-0");
    assert_eq!(
        env.row(&rows[0].id).await.credentials_version,
        rows[0].credentials_version + 1
    );
}

/// The engine stores every successful refresh through the group: a burst
/// of scheduled-style refreshes lands whole, one platform call each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_refreshes_through_the_engine_lands_whole() {
    let env = TestEnv::new().await;
    let mut ids = Vec::new();
    for n in 0..50 {
        let tokens = env.fake.issue(common::rotating());
        let new = new_account(
            Provider::X,
            &format!("burst-{n}"),
            &tokens,
            Utc::now() - TimeDelta::hours(1),
            Some(Utc::now() + TimeDelta::seconds(30)),
        );
        let policy = RefreshPolicy::from(env.settings.providers.get(Provider::X));
        let id = accounts::register(env.pool(), &env.keyring, &policy, &new)
            .await
            .unwrap()
            .account
            .id;
        ids.push((id, tokens));
    }
    let refreshes = ids
        .iter()
        .map(|(id, _)| env.engine.refresh(id, Trigger::Forced));
    for report in join_all(refreshes).await {
        assert_eq!(report.unwrap().outcome, Outcome::Refreshed);
    }
    assert_eq!(env.fake.call_count(), 50);
    for (id, issued) in &ids {
        let stored = env.stored_refresh_token(id).await.unwrap();
        assert_ne!(stored, issued.refresh_token, "rotated token stored");
        assert!(env.fake.is_live(&stored), "stored token is live");
        assert_eq!(attempts_of(&env, id).await, 1);
    }
}

#[tokio::test]
async fn leases_asked_together_are_taken_in_one_transaction_each_on_its_own_terms() {
    let env = TestEnv::new().await;
    let rows = accounts(&env, 12).await;
    let set = |sql: &'static str, id: &AccountId| {
        let pool = env.pool().clone();
        let id = id.clone();
        async move {
            sqlx::query(sql)
                .bind(id.as_str())
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    let mut claims = Vec::new();
    for (n, row) in rows.iter().enumerate() {
        let claim = uuid::Uuid::new_v4();
        sqlx::query("UPDATE account_schedule SET claim_id = $2 WHERE account_id = $1")
            .bind(row.id.as_str())
            .bind(claim)
            .execute(env.pool())
            .await
            .unwrap();
        match n % 4 {
            // Held elsewhere, unexpired.
            1 => {
                set(
                    "UPDATE social_accounts SET lease_owner = 'engine-b', lease_started_at = now(),
                     lease_until = now() + interval '1 minute' WHERE id = $1",
                    &row.id,
                )
                .await
            }
            // Held elsewhere, expired: taken over.
            2 => {
                set(
                    "UPDATE social_accounts SET lease_owner = 'engine-b',
                     lease_started_at = now() - interval '2 minutes',
                     lease_until = now() - interval '1 minute' WHERE id = $1",
                    &row.id,
                )
                .await
            }
            _ => {}
        }
        // Every fourth, from n = 3: a job whose claim is no longer the account's.
        claims.push(if n % 4 == 3 {
            Some(uuid::Uuid::new_v4())
        } else {
            Some(claim)
        });
    }
    let group = GroupLease::start(
        env.pool().clone(),
        "engine-a".into(),
        std::time::Duration::from_secs(60),
    );
    let asks = rows.iter().zip(&claims).map(|(row, claim)| {
        let group = group.clone();
        async move { group.acquire(&row.id, *claim).await }
    });
    let answers = join_all(asks).await;
    assert_eq!(group.flushes(), 1, "12 leases asked together: one flush");
    for (n, (row, answer)) in rows.iter().zip(answers).enumerate() {
        let taken = answer.unwrap();
        let after = env.row(&row.id).await;
        match n % 4 {
            0 => {
                let taken = taken.expect("a free lease is taken");
                assert!(!taken.took_over);
                assert_eq!(taken.row.lease_owner.as_deref(), Some("engine-a"));
                assert_eq!(after.lease_owner.as_deref(), Some("engine-a"));
            }
            1 | 3 => {
                assert!(taken.is_none(), "account {n}: no lease");
                let owner = if n % 4 == 1 { Some("engine-b") } else { None };
                assert_eq!(after.lease_owner.as_deref(), owner, "account {n}");
            }
            _ => {
                let taken = taken.expect("an expired lease is taken over");
                assert!(taken.took_over);
                assert!(after.interrupted_refresh_at.is_some());
                assert_eq!(after.lease_owner.as_deref(), Some("engine-a"));
            }
        }
    }
}
