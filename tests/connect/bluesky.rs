//! Bluesky through atproto OAuth: from a handle, a DID or a server to a
//! registered account its refresh flow then rotates; the DPoP nonce at PAR
//! and at the token endpoint; `iss` and the signed-in DID checked; the
//! client metadata the authorization server fetches; hosts users influence
//! held to the host guard.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokenwarden::config::{Flow, Settings};
use tokenwarden::domain::{AccountStatus, Outcome, Provider, Trigger};
use tokenwarden_fakes::{BlueskyAccount, Consent, FakeBluesky, User};
use url::Url;

use crate::support::{Connect, RETURN_URL, query};

/// The client id the fake expects of sessions it did not issue through the
/// flow; flows are told apart by the metadata the fake fetches.
const UNUSED_CLIENT: &str = "https://unused.example/client-metadata.json";

fn port(fake: &FakeBluesky) -> String {
    fake.origin().rsplit(':').next().unwrap().to_owned()
}

/// `http://<name>:<port>`: a handle (or did:web host) served by the fake.
fn served_on(fake: &FakeBluesky, name: &str) -> Url {
    Url::parse(&format!("http://{name}:{}", port(fake))).unwrap()
}

/// Bluesky on: the fake's PLC directory, its origin and the handles'
/// origins trusted, the client id the daemon's own metadata (as loading
/// the configuration derives it).
fn use_fake(s: &mut Settings, fake: &FakeBluesky, trusted: &[Url]) {
    s.providers.bluesky.client_id = s.bluesky_client_id();
    let section = s.providers.get_mut(Provider::Bluesky);
    section.flow = Flow::Bluesky;
    section.plc_directory = Some(fake.plc_directory().parse().unwrap());
    section.allowed_origins = trusted.to_vec();
    section.allowed_origins.push(fake.origin().parse().unwrap());
}

/// A fake, the accounts of `handles` on it, and the daemon trusting them.
async fn with_accounts(handles: &[&str]) -> (Connect, FakeBluesky, Vec<BlueskyAccount>) {
    let fake = FakeBluesky::start(UNUSED_CLIENT).await.unwrap();
    let accounts: Vec<BlueskyAccount> = handles.iter().map(|h| fake.create_account(h)).collect();
    let trusted: Vec<Url> = handles.iter().map(|h| served_on(&fake, h)).collect();
    let connect = Connect::start(|s| use_fake(s, &fake, &trusted)).await;
    (connect, fake, accounts)
}

fn body(handle: &str) -> Value {
    json!({
        "provider": "BLUESKY",
        "workspace_id": "ws-1",
        "redirect_after": RETURN_URL,
        "extras": {"handle": handle},
    })
}

async fn accounts_stored(connect: &Connect) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM social_accounts")
        .fetch_one(connect.env.pool())
        .await
        .unwrap()
}

/// `POST /v1/connect` that must be refused: its status and error body.
async fn refused(connect: &Connect, body: Value) -> (StatusCode, Value) {
    let response = connect.begin_raw(body).await;
    let status = response.status();
    (
        status,
        response.json::<Value>().await.unwrap()["error"].clone(),
    )
}

#[tokio::test]
async fn a_handle_connects_through_par_and_the_account_then_refreshes() {
    let (connect, fake, accounts) = with_accounts(&["alice.localhost"]).await;
    let alice = &accounts[0];
    let client_id = connect.url("oauth/client-metadata.json");

    let started = connect.begin(body("@Alice.localhost")).await;
    let at_server = Url::parse(started["authorization_url"].as_str().unwrap()).unwrap();
    // The browser carries the request_uri and the client id, nothing else.
    assert!(
        at_server
            .as_str()
            .starts_with(&format!("{}/oauth/authorize?", fake.origin()))
    );
    let keys: Vec<String> = at_server
        .query_pairs()
        .map(|(k, _)| k.into_owned())
        .collect();
    assert_eq!(keys, ["client_id", "request_uri"]);
    assert_eq!(
        query(&at_server, "client_id").as_deref(),
        Some(client_id.as_str())
    );

    // PAR: the nonce asked for once, the client metadata fetched and accepted.
    assert_eq!(fake.par_nonce_challenges(), 1);
    assert_eq!(fake.client_metadata_fetches(), [client_id.to_string()]);
    let pushed = fake.pushed_requests();
    assert_eq!(pushed.len(), 1);
    let par = &pushed[0];
    assert_eq!(par["login_hint"], "alice.localhost");
    assert_eq!(par["scope"], "atproto transition:generic");
    assert_eq!(par["code_challenge_method"], "S256");
    assert_eq!(par["response_type"], "code");
    assert_eq!(par["state"], started["state"].as_str().unwrap());
    assert_eq!(
        par["redirect_uri"],
        connect.url("v1/connect/callback").as_str()
    );
    assert!(
        fake.proof_rejections().is_empty(),
        "{:?}",
        fake.proof_rejections()
    );

    let back = connect.browse(at_server.as_str()).await;
    assert_eq!(query(&back, "iss").as_deref(), Some(fake.origin().as_str()));
    let landed = connect.callback(&back).await;
    let id = Connect::account_id(&landed);
    // The code went with the nonce PAR had already handed out.
    assert_eq!((fake.code_redemptions(), fake.nonce_challenges()), (1, 0));

    let row = connect.env.row(&id).await;
    assert_eq!(row.provider, Provider::Bluesky);
    assert_eq!(row.external_id, alice.did);
    assert_eq!(row.handle.as_deref(), Some("alice.localhost"));
    assert_eq!(row.status, AccountStatus::Active);
    assert_eq!(row.meta["auth_server"], fake.origin());
    assert_eq!(row.meta["pds_host"], fake.origin());
    assert_eq!(row.granted_scopes, ["atproto", "transition:generic"]);
    assert!(
        row.dpop_key_ciphertext.is_some(),
        "the session's DPoP key is kept"
    );
    let first = connect.env.stored_refresh_token(&id).await.unwrap();
    assert!(fake.is_live_oauth(&first));

    // The refresh flow proves possession of the same key with the same client.
    let report = connect
        .env
        .engine
        .refresh(&id, Trigger::Forced)
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Refreshed, "{:?}", report.message);
    assert!(!fake.is_live_oauth(&first), "the refresh token rotated");
    assert!(fake.is_live_oauth(&connect.env.stored_refresh_token(&id).await.unwrap()));
    assert!(
        fake.proof_rejections().is_empty(),
        "{:?}",
        fake.proof_rejections()
    );
}

#[tokio::test]
async fn the_client_metadata_is_served_without_an_api_key() {
    let (connect, _fake, _) = with_accounts(&[]).await;
    let response = connect
        .browser
        .get(connect.url("oauth/client-metadata.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await.unwrap();
    assert_eq!(
        document["client_id"],
        connect.url("oauth/client-metadata.json").as_str()
    );
    assert_eq!(
        document["redirect_uris"],
        json!([connect.url("v1/connect/callback").as_str()])
    );
    assert_eq!(document["dpop_bound_access_tokens"], true);
    assert_eq!(document["token_endpoint_auth_method"], "none");
}

#[tokio::test]
async fn a_new_nonce_at_the_token_endpoint_costs_one_retry() {
    let (connect, fake, accounts) = with_accounts(&["alice.localhost"]).await;
    let (_, back) = connect.consent(body("alice.localhost")).await;
    fake.rotate_nonce();
    let landed = connect.callback(&back).await;
    let id = Connect::account_id(&landed);
    assert_eq!(connect.env.row(&id).await.external_id, accounts[0].did);
    assert_eq!(fake.nonce_challenges(), 1);
    assert_eq!(
        fake.code_redemptions(),
        1,
        "the challenge did not spend the code"
    );
    assert!(
        fake.proof_rejections().is_empty(),
        "{:?}",
        fake.proof_rejections()
    );
}

#[tokio::test]
async fn a_callback_from_another_issuer_or_without_one_is_refused() {
    let (connect, fake, _) = with_accounts(&["alice.localhost"]).await;
    for iss in [Some("https://evil.example"), None] {
        let (_, back) = connect.consent(body("alice.localhost")).await;
        let mut forged = back.clone();
        let pairs: Vec<(String, String)> = back
            .query_pairs()
            .filter(|(k, _)| k != "iss")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        {
            let mut query = forged.query_pairs_mut();
            query.clear();
            for (k, v) in &pairs {
                query.append_pair(k, v);
            }
            if let Some(iss) = iss {
                query.append_pair("iss", iss);
            }
        }
        let landed = connect.callback(&forged).await;
        assert_eq!(
            query(&landed, "error").as_deref(),
            Some("invalid_request"),
            "{landed}"
        );
        assert!(query(&landed, "error_description").unwrap().contains("iss"));
    }
    assert_eq!(fake.code_redemptions(), 0, "no code was sent anywhere");
    assert_eq!(accounts_stored(&connect).await, 0);
}

#[tokio::test]
async fn signing_in_as_another_account_than_the_handle_names_is_refused() {
    let (connect, fake, accounts) = with_accounts(&["alice.localhost", "bob.localhost"]).await;
    let bob = &accounts[1];
    let started = connect.begin(body("alice.localhost")).await;
    fake.next_consent(Consent::Approve(User::new(&bob.did, &bob.handle, "Bob")));
    let back = connect
        .browse(started["authorization_url"].as_str().unwrap())
        .await;
    let landed = connect.callback(&back).await;
    assert_eq!(
        query(&landed, "error").as_deref(),
        Some("server_error"),
        "{landed}"
    );
    let why = query(&landed, "error_description").unwrap();
    assert!(
        why.contains(&bob.did) && why.contains(&accounts[0].did),
        "{why}"
    );
    assert_eq!(accounts_stored(&connect).await, 0);
}

#[tokio::test]
async fn a_declined_consent_registers_nothing() {
    let (connect, fake, _) = with_accounts(&["alice.localhost"]).await;
    let started = connect.begin(body("alice.localhost")).await;
    fake.next_consent(Consent::Deny);
    let back = connect
        .browse(started["authorization_url"].as_str().unwrap())
        .await;
    let landed = connect.callback(&back).await;
    assert_eq!(query(&landed, "error").as_deref(), Some("access_denied"));
    assert_eq!(accounts_stored(&connect).await, 0);
}

#[tokio::test]
async fn a_did_web_identity_connects_with_its_handle_checked_both_ways() {
    let fake = FakeBluesky::start(UNUSED_CLIENT).await.unwrap();
    let dave = fake.create_web_account("dave.localhost");
    let trusted = [served_on(&fake, "dave.localhost")];
    let connect = Connect::start(|s| use_fake(s, &fake, &trusted)).await;
    assert!(
        dave.did.starts_with("did:web:dave.localhost%3A"),
        "{}",
        dave.did
    );
    let landed = connect.connect(body(&dave.did)).await;
    let id = Connect::account_id(&landed);
    let row = connect.env.row(&id).await;
    assert_eq!(row.external_id, dave.did);
    assert_eq!(row.handle.as_deref(), Some("dave.localhost"));
    assert_eq!(fake.pushed_requests()[0]["login_hint"], dave.did);
    let requests = fake.identity_requests();
    assert!(
        requests
            .iter()
            .any(|r| r.ends_with("/.well-known/did.json")),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.ends_with("/.well-known/atproto-did")),
        "{requests:?}"
    );
}

#[tokio::test]
async fn a_did_document_claiming_a_handle_that_names_another_did_gives_no_handle() {
    let (connect, fake, accounts) = with_accounts(&["alice.localhost", "bob.localhost"]).await;
    let (alice, bob) = (&accounts[0], &accounts[1]);
    fake.set_claimed_handle(&alice.did, "bob.localhost");
    let landed = connect.connect(body(&alice.did)).await;
    let row = connect.env.row(&Connect::account_id(&landed)).await;
    assert_eq!(row.external_id, alice.did);
    assert_eq!(row.handle, None, "bob.localhost names {}", bob.did);
}

#[tokio::test]
async fn from_a_server_the_account_signed_in_must_be_hosted_there() {
    let fake = FakeBluesky::start(UNUSED_CLIENT).await.unwrap();
    let other = FakeBluesky::start(UNUSED_CLIENT).await.unwrap();
    let carol = fake.create_account("carol.localhost");
    let trusted = [
        served_on(&fake, "carol.localhost"),
        other.origin().parse().unwrap(),
    ];
    let connect = Connect::start(|s| use_fake(s, &fake, &trusted)).await;

    // No login hint: the user signs in at the server; the DID is checked after.
    let landed = connect.connect(body(&fake.origin())).await;
    let row = connect.env.row(&Connect::account_id(&landed)).await;
    assert_eq!(row.external_id, carol.did);
    assert_eq!(row.handle.as_deref(), Some("carol.localhost"));
    assert_eq!(row.meta["pds_host"], fake.origin());
    assert!(!fake.pushed_requests()[0].contains_key("login_hint"));

    // Hosted elsewhere (its PDS names another authorization server): this
    // server cannot speak for the account.
    fake.set_pds(&carol.did, &other.origin());
    let (_, back) = connect.consent(body(&fake.origin())).await;
    let landed = connect.callback(&back).await;
    assert_eq!(
        query(&landed, "error").as_deref(),
        Some("server_error"),
        "{landed}"
    );
    let why = query(&landed, "error_description").unwrap();
    assert!(why.contains("authorization server"), "{why}");
    assert_eq!(accounts_stored(&connect).await, 1);
}

#[tokio::test]
async fn hosts_resolving_to_private_addresses_are_refused_before_any_request() {
    let fake = FakeBluesky::start(UNUSED_CLIENT).await.unwrap();
    let alice = fake.create_account("alice.localhost");
    let erin = fake.create_account("erin.example");
    fake.set_pds(&erin.did, "https://10.0.0.1");
    // Only the fake itself is trusted, not the handle's name.
    let connect = Connect::start(|s| use_fake(s, &fake, &[])).await;

    let (status, error) = refused(&connect, body("alice.localhost")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["code"], "invalid_request");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("does not resolve to a public address"),
        "{message}"
    );
    assert!(
        fake.identity_requests().is_empty(),
        "{:?}",
        fake.identity_requests()
    );
    let _ = alice;

    let (status, error) = refused(&connect, body(&erin.did)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("10.0.0.1 is not a public address"),
        "{error}"
    );
    assert!(fake.pushed_requests().is_empty());

    for bad in [
        json!({}),
        json!({"handle": "not a handle"}),
        json!({"handle": "did:key:z6Mk"}),
    ] {
        let mut request = body("x");
        request["extras"] = bad;
        let (status, error) = refused(&connect, request).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    }
    assert_eq!(accounts_stored(&connect).await, 0);
}

/// A client made by hand against the fake, to show what it refuses: a
/// redirect URI the metadata does not list, an unknown client, a
/// `request_uri` used twice, and codes redeemed with the wrong verifier or
/// key, or twice.
mod strict_fake {
    use tokenwarden::connect::pkce::{code_challenge, code_verifier};
    use tokenwarden::providers::DpopKey;

    use super::*;

    struct Client<'a> {
        fake: &'a FakeBluesky,
        connect: &'a Connect,
        http: reqwest::Client,
        nonce: Option<String>,
    }

    impl Client<'_> {
        async fn post(&mut self, path: &str, key: &DpopKey, form: &[(&str, &str)]) -> (u16, Value) {
            let url = Url::parse(&format!("{}{path}", self.fake.origin())).unwrap();
            let proof = key.proof(
                "POST",
                &url,
                self.nonce.as_deref(),
                chrono::Utc::now().timestamp(),
            );
            let response = self
                .http
                .post(url)
                .header("DPoP", proof)
                .form(form)
                .send()
                .await
                .unwrap();
            if let Some(nonce) = response.headers().get("dpop-nonce") {
                self.nonce = Some(nonce.to_str().unwrap().to_owned());
            }
            (response.status().as_u16(), response.json().await.unwrap())
        }

        /// PAR then consent: the code at the callback.
        async fn code(&mut self, key: &DpopKey, challenge: &str) -> String {
            let client_id = self.connect.url("oauth/client-metadata.json");
            let callback = self.connect.url("v1/connect/callback");
            let (status, answer) = self
                .post(
                    "/oauth/par",
                    key,
                    &[
                        ("client_id", client_id.as_str()),
                        ("response_type", "code"),
                        ("code_challenge", challenge),
                        ("code_challenge_method", "S256"),
                        ("state", "s1"),
                        ("redirect_uri", callback.as_str()),
                        ("scope", "atproto"),
                    ],
                )
                .await;
            assert_eq!(status, 201, "{answer}");
            let mut authorize =
                Url::parse(&format!("{}/oauth/authorize", self.fake.origin())).unwrap();
            authorize
                .query_pairs_mut()
                .append_pair("client_id", client_id.as_str())
                .append_pair("request_uri", answer["request_uri"].as_str().unwrap());
            let back = self.connect.browse(authorize.as_str()).await;
            let again = self.http.get(authorize).send().await.unwrap();
            assert_eq!(
                again.status(),
                StatusCode::BAD_REQUEST,
                "a request_uri is used once"
            );
            query(&back, "code").unwrap()
        }

        async fn redeem(&mut self, key: &DpopKey, code: &str, verifier: &str) -> (u16, Value) {
            let client_id = self.connect.url("oauth/client-metadata.json");
            let callback = self.connect.url("v1/connect/callback");
            self.post(
                "/oauth/token",
                key,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", callback.as_str()),
                    ("code_verifier", verifier),
                    ("client_id", client_id.as_str()),
                ],
            )
            .await
        }
    }

    #[tokio::test]
    async fn the_fake_refuses_what_an_atproto_server_refuses() {
        let (connect, fake, accounts) = with_accounts(&["alice.localhost"]).await;
        let mut client = Client {
            fake: &fake,
            connect: &connect,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            nonce: None,
        };
        let key = DpopKey::generate();
        let verifier = code_verifier();
        let challenge = code_challenge(&verifier);
        let secret = |v: &secrecy::SecretString| secrecy::ExposeSecret::expose_secret(v).to_owned();
        let client_id = connect.url("oauth/client-metadata.json");
        let base = |redirect: &str, client: &str| {
            vec![
                ("client_id".to_owned(), client.to_owned()),
                ("response_type".to_owned(), "code".to_owned()),
                ("code_challenge".to_owned(), challenge.clone()),
                ("code_challenge_method".to_owned(), "S256".to_owned()),
                ("state".to_owned(), "s".to_owned()),
                ("redirect_uri".to_owned(), redirect.to_owned()),
                ("scope".to_owned(), "atproto".to_owned()),
            ]
        };
        let callback = connect.url("v1/connect/callback");
        for (form, status, error) in [
            // The first proof has no nonce: the server hands one out.
            (
                base(callback.as_str(), client_id.as_str()),
                400,
                "use_dpop_nonce",
            ),
            (
                base("https://elsewhere.example/cb", client_id.as_str()),
                400,
                "invalid_request",
            ),
            (
                base(callback.as_str(), "http://127.0.0.1:9/client.json"),
                400,
                "invalid_client",
            ),
            (
                base(callback.as_str(), "https://app.example/client.json#x"),
                400,
                "invalid_client",
            ),
        ] {
            let form: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let (got, answer) = client.post("/oauth/par", &key, &form).await;
            assert_eq!(
                (got, answer["error"].as_str().unwrap()),
                (status, error),
                "{answer}"
            );
        }

        // The wrong verifier spends the code.
        let code = client.code(&key, &challenge).await;
        let (status, answer) = client.redeem(&key, &code, &secret(&code_verifier())).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("invalid_grant")),
            "{answer}"
        );
        let (_, answer) = client.redeem(&key, &code, &secret(&verifier)).await;
        assert_eq!(answer["error_description"], "Code already used");

        // Another key than the PAR's.
        let code = client.code(&key, &challenge).await;
        let (_, answer) = client
            .redeem(&DpopKey::generate(), &code, &secret(&verifier))
            .await;
        assert!(
            answer["error_description"]
                .as_str()
                .unwrap()
                .contains("DPoP key"),
            "{answer}"
        );

        // The right verifier and key, once.
        let code = client.code(&key, &challenge).await;
        let (status, answer) = client.redeem(&key, &code, &secret(&verifier)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["token_type"], "DPoP");
        assert_eq!(answer["sub"], accounts[0].did.as_str());
        assert_eq!(answer["scope"], "atproto");
        let (_, answer) = client.redeem(&key, &code, &secret(&verifier)).await;
        assert_eq!(answer["error"], "invalid_grant");
        assert!(
            fake.proof_rejections().is_empty(),
            "{:?}",
            fake.proof_rejections()
        );
    }
}
