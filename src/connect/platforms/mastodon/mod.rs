//! Mastodon: each user names their own instance (`extras.instance`). The
//! daemon registers an app there once (see `apps`), sends the browser to
//! the instance's `/oauth/authorize` (PKCE S256 when `connect_pkce`),
//! exchanges the code at its `/oauth/token`, and names the account with
//! `verify_credentials`. Tokens do not expire: the account is registered
//! for health checks on `meta.instance_host`.

mod answers;
mod apps;

use futures::FutureExt;
use futures::future::BoxFuture;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use url::{Host, Url};

use self::apps::{AppFor, Apps, INVALID_CLIENT};
use crate::config::{ClientAuth, Settings};
use crate::connect::exchange::{CodeExchange, code_grant, get_profile, usable_grant};
use crate::connect::pkce::{code_challenge, code_verifier};
use crate::connect::{
    Authorization, Begin, Complete, ConnectError, Connected, ConnectedAccount, Connector,
    SessionSecrets,
};
use crate::domain::Provider;
use crate::engine::Engine;
use crate::providers::HttpClient;
use crate::providers::host_guard::HostGuard;
use crate::registration::{AccountSpec, CredentialsSpec};

const MAX_INSTANCE: usize = 255;

pub struct MastodonConnector {
    guard: HostGuard,
    http: HttpClient,
    apps: Apps,
    pkce: bool,
}

impl MastodonConnector {
    /// Its client resolves through the host guard: an instance is a
    /// user-chosen host.
    pub fn new(settings: &Settings, engine: &Engine) -> Result<Self, reqwest::Error> {
        let section = settings.providers.get(Provider::Mastodon);
        let guard = HostGuard::new(&section.allowed_origins);
        let http = HttpClient::with_resolver(&settings.http, guard.clone())?;
        Ok(Self {
            apps: Apps::new(
                http.clone(),
                engine.clone(),
                settings.connect.client_name.clone(),
            ),
            guard,
            http,
            pkce: section.connect_pkce,
        })
    }

    /// The instance's origin, refused (before any request) unless it is
    /// https and public, or allowlisted.
    async fn instance(&self, extras: &Value) -> Result<Url, ConnectError> {
        let given = extras
            .get("instance")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ConnectError::invalid_request(
                    "extras.instance is required: the user's Mastodon instance, as a host \
                     (mastodon.social) or its https origin",
                )
            })?;
        if given.chars().count() > MAX_INSTANCE || given.chars().any(char::is_control) {
            return Err(ConnectError::invalid_request(format!(
                "extras.instance: at most {MAX_INSTANCE} characters without control characters"
            )));
        }
        let origin = self.origin(given)?;
        // The connections themselves resolve through the guard; resolving
        // here too names the refusal as the request's fault, not an outage.
        if let Some(Host::Domain(name)) = origin.host() {
            self.guard.resolve(name).await.map_err(refused)?;
        }
        Ok(origin)
    }

    fn origin(&self, given: &str) -> Result<Url, ConnectError> {
        self.guard.origin(given).map_err(refused)
    }

    async fn begin_at(&self, begin: Begin<'_>) -> Result<Authorization, ConnectError> {
        let origin = self.instance(begin.extras).await?;
        let scopes = scope_set(begin.scopes)?;
        let at = AppFor {
            origin: &origin,
            redirect_uri: begin.redirect_uri,
            scopes: &scopes,
        };
        let app = self.apps.for_authorization(&at).await?;
        let mut url = origin
            .join("oauth/authorize")
            .map_err(|_| ConnectError::invalid_request("extras.instance: cannot build its URLs"))?;
        let mut secrets = SessionSecrets::default();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &app.client_id)
                .append_pair("redirect_uri", begin.redirect_uri.as_str())
                .append_pair("scope", &scopes)
                .append_pair("state", begin.state);
            if self.pkce {
                let verifier = code_verifier();
                query
                    .append_pair("code_challenge", &code_challenge(&verifier))
                    .append_pair("code_challenge_method", "S256");
                secrets.code_verifier = Some(verifier);
            }
        }
        Ok(Authorization {
            url,
            secrets,
            context: json!({
                "instance": origin.origin().ascii_serialization(),
                "client_id": app.client_id,
            }),
        })
    }

    async fn complete_at(&self, complete: Complete<'_>) -> Result<Connected, ConnectError> {
        let context_text = |field: &str| {
            complete
                .context
                .get(field)
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ConnectError::invalid_request(format!("the session names no {field}"))
                })
        };
        let origin = self.origin(context_text("instance")?)?;
        let client_id = context_text("client_id")?;
        let scopes = scope_set(complete.scopes)?;
        let at = AppFor {
            origin: &origin,
            redirect_uri: complete.redirect_uri,
            scopes: &scopes,
        };
        let app = self
            .apps
            .for_exchange(&at, client_id)
            .await?
            .ok_or_else(|| {
                ConnectError::exchange_failed(
                    "the app this authorization was made for is no longer registered here: \
                     start the connection again",
                )
            })?;
        let token_url = origin
            .join("oauth/token")
            .map_err(|_| ConnectError::invalid_request("extras.instance: cannot build its URLs"))?;
        let scope_form = [("scope", scopes.as_str())];
        let answer = code_grant(
            &self.http,
            CodeExchange {
                token_url: &token_url,
                client_id: &app.client_id,
                client_secret: Some(&app.client_secret),
                client_auth: Some(ClientAuth::Body),
                code: complete.code,
                redirect_uri: complete.redirect_uri,
                code_verifier: complete.secrets.code_verifier.as_ref(),
                extra_form: &scope_form,
            },
        )
        .await;
        let scrub = |mut error: ConnectError| {
            error.message =
                crate::scrub::scrub(&error.message, &[app.client_secret.expose_secret()]);
            error
        };
        let grant = match answer {
            Ok(grant) => grant,
            Err(e) if e.code.as_deref() == Some(INVALID_CLIENT) => {
                self.apps.forget(&at, &app.client_id).await?;
                return Err(ConnectError::exchange_failed(
                    "code exchange: the instance no longer knows the app registered on it \
                     (invalid_client); a new one is registered when the connection is started again",
                ));
            }
            Err(e) => return Err(scrub(ConnectError::from_provider("code exchange", e))),
        };
        usable_grant(&grant)?;
        if grant.expires_in.is_some() {
            return Err(ConnectError::exchange_failed(
                "code exchange: the instance issued an expiring token; servers whose tokens \
                 expire (such as Pleroma) are not supported",
            ));
        }
        let verify = origin
            .join("api/v1/accounts/verify_credentials")
            .map_err(|_| ConnectError::invalid_request("extras.instance: cannot build its URLs"))?;
        let account = get_profile(
            &self.http,
            verify,
            grant.access_token.expose(),
            "verify_credentials",
        )
        .await
        .map_err(scrub)?;
        let identity = answers::identity(&account)?;
        let authority = authority(&origin);
        let handle = identity
            .username
            .as_ref()
            .map(|name| format!("{name}@{}", origin.host_str().unwrap_or(&authority)));
        let spec = AccountSpec {
            workspace_id: complete.workspace_id.to_owned(),
            provider: complete.provider,
            // Account ids are unique on their instance only.
            external_id: format!("{}@{authority}", identity.id),
            handle,
            display_name: identity.display_name,
            avatar_url: identity.avatar_url,
            connection_type: None,
            scopes: grant
                .scopes
                .clone()
                .unwrap_or_else(|| complete.scopes.to_vec()),
            meta: Some(json!({ "instance_host": instance_host(&origin) })),
            default_board_id: None,
            // No refresh token is kept: these accounts are never refreshed.
            credentials: CredentialsSpec {
                access_token: grant.access_token.expose().to_owned(),
                refresh_token: None,
                expires_in: None,
                token_expires_at: None,
                refresh_token_expires_at: None,
                dpop_private_jwk: None,
            },
        };
        Ok(Connected::Accounts(vec![ConnectedAccount {
            spec,
            warnings: Vec::new(),
        }]))
    }
}

impl Connector for MastodonConnector {
    fn begin<'a>(&'a self, begin: Begin<'a>) -> BoxFuture<'a, Result<Authorization, ConnectError>> {
        self.begin_at(begin).boxed()
    }

    fn complete<'a>(
        &'a self,
        complete: Complete<'a>,
    ) -> BoxFuture<'a, Result<Connected, ConnectError>> {
        self.complete_at(complete).boxed()
    }
}

fn refused(why: String) -> ConnectError {
    ConnectError::invalid_request(format!("extras.instance refused: {why}"))
}

/// The scopes as one space-separated, sorted set: the key of the app.
fn scope_set(scopes: &[String]) -> Result<String, ConnectError> {
    let mut sorted: Vec<&str> = scopes.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.is_empty() {
        return Err(ConnectError::invalid_request(
            "scopes: Mastodon needs at least one (providers.mastodon.connect_scopes)",
        ));
    }
    Ok(sorted.join(" "))
}

/// `host[:port]`: what identifies the instance in an account's external id.
fn authority(origin: &Url) -> String {
    let host = origin.host_str().unwrap_or_default();
    match origin.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// What the health check is given: the host for https (the usual case), the
/// whole origin for an allowlisted plain-http instance.
fn instance_host(origin: &Url) -> String {
    if origin.scheme() == "https" {
        authority(origin)
    } else {
        origin.origin().ascii_serialization()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_one_sorted_set() {
        let scopes = ["write:statuses", "read:accounts", "write:statuses"].map(String::from);
        assert_eq!(scope_set(&scopes).unwrap(), "read:accounts write:statuses");
        assert!(scope_set(&[]).is_err());
    }

    #[test]
    fn the_instance_host_round_trips_through_the_guard() {
        let allowed: Url = "http://127.0.0.1:4000".parse().unwrap();
        let guard = HostGuard::new(std::slice::from_ref(&allowed));
        for given in [
            "mastodon.social",
            "https://mastodon.social",
            "Mastodon.Social:8443",
            "http://127.0.0.1:4000",
        ] {
            let origin = guard.origin(given).unwrap();
            let host = instance_host(&origin);
            assert_eq!(guard.origin(&host).unwrap(), origin, "{given} -> {host}");
        }
        let origin = guard.origin("https://mastodon.social:443").unwrap();
        assert_eq!(instance_host(&origin), "mastodon.social");
        assert_eq!(
            authority(&guard.origin("example.org:8443").unwrap()),
            "example.org:8443"
        );
    }
}
