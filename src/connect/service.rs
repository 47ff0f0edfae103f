//! The connect flow's state machine: start (state, PKCE, the platform's
//! URL), finish (single-use state, code exchange, registration), and the
//! optional choice between them. Platform specifics stay in the connectors.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use tracing::Instrument;
use url::Url;

use super::pkce::{random_token, state_hash};
use super::{
    ChoiceOption, Chosen, Complete, ConnectError, Connected, ConnectedAccount, Connector,
    SessionSecrets,
};
use super::{request, sealed};
use crate::config::{ConnectSettings, Settings};
use crate::domain::{AccountId, AccountStatus, Provider};
use crate::engine::Engine;
use crate::providers::{HttpClient, basic_credentials};
use crate::store::accounts::{self, Registered};
use crate::store::connect::{self as sessions, NewSession, SessionRow, Taken};

/// What the API tier asks for.
pub struct StartRequest {
    pub provider: Provider,
    pub workspace_id: String,
    pub redirect_after: String,
    pub scopes: Option<Vec<String>>,
    pub account_id: Option<String>,
    pub extras: Option<serde_json::Value>,
}

pub struct Started {
    pub authorization_url: Url,
    pub state: String,
    pub expires_at: DateTime<Utc>,
}

/// The platform's redirect, as received.
pub struct Callback {
    pub code: Option<SecretString>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    pub issuer: Option<String>,
}

/// One registered account, with what its health should warn about.
pub struct Landed {
    pub registered: Registered,
    pub warnings: Vec<String>,
}

pub enum Finished {
    Connected {
        accounts: Vec<Landed>,
        redirect_after: Url,
    },
    /// The user must choose (pages) in a second call with the same state.
    ChoiceRequired {
        options: Vec<ChoiceOption>,
        redirect_after: Url,
    },
}

/// A failed finish: the error, and where to send the browser when the
/// state was valid (an unknown state names no trusted destination).
pub struct Failed {
    pub error: ConnectError,
    pub redirect_after: Option<Url>,
}

impl From<ConnectError> for Failed {
    fn from(error: ConnectError) -> Self {
        Self {
            error,
            redirect_after: None,
        }
    }
}

#[derive(Clone)]
pub struct ConnectService {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ConnectSettings,
    callback: Option<Url>,
    engine: Engine,
    connectors: HashMap<Provider, Arc<dyn Connector>>,
    /// Why a platform has no connector, for its 409.
    missing: HashMap<Provider, String>,
    /// Client secrets, only to scrub their echoes from platform text.
    client_secrets: Vec<SecretString>,
    /// Each platform's `connect_scopes`.
    default_scopes: HashMap<Provider, Vec<String>>,
    /// The atproto OAuth client metadata the API serves, when the flow is on.
    client_metadata: Option<serde_json::Value>,
}

impl ConnectService {
    pub fn new(settings: &Settings, engine: Engine) -> Result<Self, reqwest::Error> {
        let http = HttpClient::new(&settings.http)?;
        let built = super::platforms::build(settings, &http, &engine);
        // Each secret as sent: itself, and inside a Basic header.
        let client_secrets = Provider::ALL
            .iter()
            .map(|p| settings.providers.get(*p))
            .filter_map(|section| {
                let secret = section.client_secret.clone()?;
                let basic = section
                    .client_id
                    .as_deref()
                    .map(|id| SecretString::from(basic_credentials(id, Some(&secret))));
                Some([Some(secret), basic])
            })
            .flatten()
            .flatten()
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                settings: settings.connect.clone(),
                callback: settings.connect.callback_url(),
                engine,
                connectors: built.connectors,
                missing: built.missing,
                client_secrets,
                default_scopes: Provider::ALL
                    .iter()
                    .map(|p| (*p, settings.providers.get(*p).connect_scopes.clone()))
                    .collect(),
                client_metadata: super::client_metadata(settings),
            }),
        })
    }

    pub fn settings(&self) -> &ConnectSettings {
        &self.inner.settings
    }

    /// The atproto OAuth client metadata document, when the flow is on.
    pub fn client_metadata(&self) -> Option<&serde_json::Value> {
        self.inner.client_metadata.as_ref()
    }

    fn callback(&self) -> Result<&Url, ConnectError> {
        self.inner.callback.as_ref().ok_or_else(|| {
            ConnectError::not_configured("the connect flow is off: connect.public_url is not set")
        })
    }

    fn connector(&self, provider: Provider) -> Result<&Arc<dyn Connector>, ConnectError> {
        self.inner.connectors.get(&provider).ok_or_else(|| {
            ConnectError::not_configured(
                self.inner
                    .missing
                    .get(&provider)
                    .cloned()
                    .unwrap_or_else(|| format!("{provider} cannot be connected here")),
            )
        })
    }

    pub async fn start(&self, request: StartRequest) -> Result<Started, ConnectError> {
        let callback = self.callback()?;
        let provider = request.provider;
        let connector = self.connector(provider)?;
        let workspace_id = request::checked_text("workspace_id", &request.workspace_id)?;
        let redirect_after =
            request::redirect_target(&self.inner.settings, &request.redirect_after)?;
        let scopes = match request.scopes {
            Some(scopes) => request::checked_scopes(scopes)?,
            None => self
                .inner
                .default_scopes
                .get(&provider)
                .cloned()
                .unwrap_or_default(),
        };
        let extras = match request.extras {
            None | Some(serde_json::Value::Null) => serde_json::json!({}),
            Some(object @ serde_json::Value::Object(_)) => request::checked_extras(object)?,
            Some(_) => {
                return Err(ConnectError::invalid_request(
                    "extras: must be a JSON object",
                ));
            }
        };
        let account_id = match &request.account_id {
            Some(id) => Some(self.reconnectable(id, provider, &workspace_id).await?),
            None => None,
        };

        let state = random_token();
        let authorization = connector
            .begin(super::Begin {
                provider,
                workspace_id: &workspace_id,
                scopes: &scopes,
                redirect_uri: callback,
                state: &state,
                extras: &extras,
            })
            .await
            .map_err(|e| self.scrubbed(e, None, &SessionSecrets::default()))?;
        let hash = state_hash(&state);
        let sealed = sealed::seal(self.inner.engine.keyring(), &hash, &authorization.secrets)?;
        let expires_at = Utc::now()
            + chrono::Duration::from_std(self.inner.settings.state_ttl)
                .unwrap_or(chrono::Duration::minutes(10));
        let account_text = account_id.as_ref().map(ToString::to_string);
        sessions::insert(
            self.pool(),
            &NewSession {
                state_hash: &hash,
                provider: provider.as_str(),
                workspace_id: &workspace_id,
                redirect_after: redirect_after.as_str(),
                scopes: &scopes,
                account_id: account_text.as_deref(),
                extras: &extras,
                context: &authorization.context,
                secrets: sealed
                    .as_ref()
                    .map(|(bytes, key)| (bytes.as_slice(), key.as_str())),
                expires_at,
            },
        )
        .await
        .map_err(storage_error)?;
        crate::metrics::record_connect_started(provider);
        tracing::info!(%provider, workspace_id, "connect flow started");
        Ok(Started {
            authorization_url: authorization.url,
            state,
            expires_at,
        })
    }

    /// The callback (browser redirect) or `POST /v1/connect/exchange`.
    ///
    /// Runs to its end even when the caller goes away (a browser that gives
    /// up, a proxy's timeout): once the state is taken the code is spent,
    /// and the tokens it buys must be kept.
    pub async fn finish(&self, state: &str, callback: Callback) -> Result<Finished, Failed> {
        let this = self.clone();
        let state = state.to_owned();
        let task =
            tokio::spawn(async move { this.finish_here(&state, callback).await }.in_current_span());
        match to_the_end(task).await {
            Ok(finished) => finished,
            Err(error) => Err(error.into()),
        }
    }

    async fn finish_here(&self, state: &str, callback: Callback) -> Result<Finished, Failed> {
        let hash = state_hash(state);
        let session = match sessions::take(self.pool(), &hash).await {
            Ok(Taken::Fresh(session)) => *session,
            Ok(taken) => {
                let error = self.refused_state(taken);
                crate::metrics::record_connect_completed(None, error.code);
                return Err(error.into());
            }
            Err(e) => return Err(storage_error(e).into()),
        };
        let provider: Option<Provider> = session.provider.parse().ok();
        let redirect_after = Url::parse(&session.redirect_after).ok();
        let result = self.finish_session(&hash, session, callback).await;
        let outcome = match &result {
            Ok(Finished::ChoiceRequired { .. }) => "choice_required",
            Ok(Finished::Connected { accounts, .. })
                if accounts.iter().all(|a| a.registered.created) =>
            {
                "connected"
            }
            Ok(Finished::Connected { .. }) => "reconnected",
            Err(error) => error.code,
        };
        crate::metrics::record_connect_completed(provider, outcome);
        result.map_err(|error| {
            tracing::warn!(provider = ?provider, code = error.code, error = %error.message, "connect flow failed");
            Failed {
                error,
                redirect_after,
            }
        })
    }

    async fn finish_session(
        &self,
        hash: &[u8],
        session: SessionRow,
        callback: Callback,
    ) -> Result<Finished, ConnectError> {
        let secrets = sealed::open(self.inner.engine.keyring(), hash, &session)?;
        let code = callback.code.clone();
        self.finish_with(hash, session, callback, &secrets)
            .await
            .map_err(|e| self.scrubbed(e, code.as_ref(), &secrets))
    }

    async fn finish_with(
        &self,
        hash: &[u8],
        session: SessionRow,
        callback: Callback,
        secrets: &SessionSecrets,
    ) -> Result<Finished, ConnectError> {
        let provider: Provider = session
            .provider
            .parse()
            .map_err(|_| ConnectError::state_unknown())?;
        let redirect_after =
            Url::parse(&session.redirect_after).map_err(|_| ConnectError::state_unknown())?;
        if let Some(error) = &callback.error {
            return Err(ConnectError::declined(
                error,
                callback.error_description.as_deref(),
            ));
        }
        let code = callback
            .code
            .ok_or_else(|| ConnectError::invalid_request("code is missing"))?;
        let connector = self.connector(provider)?;
        let callback_url = self.callback()?;
        let account_id = session
            .account_id
            .as_deref()
            .and_then(|id| id.parse::<AccountId>().ok());
        let connected = connector
            .complete(Complete {
                provider,
                workspace_id: &session.workspace_id,
                code: &code,
                redirect_uri: callback_url,
                scopes: &session.scopes,
                secrets,
                context: &session.context,
                extras: &session.extras,
                issuer: callback.issuer.as_deref(),
                account_id: account_id.as_ref(),
            })
            .await?;
        match connected {
            Connected::Accounts(accounts) => Ok(Finished::Connected {
                accounts: self
                    .register_all(provider, account_id.as_ref(), accounts)
                    .await?,
                redirect_after,
            }),
            Connected::Choose(choice) => {
                let sealed = sealed::seal(self.inner.engine.keyring(), hash, &choice.secrets)?
                    .ok_or_else(|| {
                        ConnectError::invalid_request("the choice carries no credentials")
                    })?;
                let stored = serde_json::json!({
                    "options": choice.options,
                    "context": choice.context,
                });
                sessions::save_choice(self.pool(), hash, &stored, (&sealed.0, &sealed.1))
                    .await
                    .map_err(storage_error)?;
                Ok(Finished::ChoiceRequired {
                    options: choice.options,
                    redirect_after,
                })
            }
        }
    }

    /// The second call of a flow that answered `ChoiceRequired`; like
    /// `finish`, it runs to its end once the choice is taken.
    pub async fn choose(
        &self,
        state: &str,
        selected: &[String],
    ) -> Result<Vec<Landed>, ConnectError> {
        let this = self.clone();
        let state = state.to_owned();
        // An id named twice is one choice.
        let mut unique: Vec<String> = Vec::with_capacity(selected.len());
        for id in selected {
            if !unique.contains(id) {
                unique.push(id.clone());
            }
        }
        to_the_end(tokio::spawn(
            async move { this.choose_here(&state, &unique).await }.in_current_span(),
        ))
        .await
        .unwrap_or_else(Err)
    }

    async fn choose_here(
        &self,
        state: &str,
        selected: &[String],
    ) -> Result<Vec<Landed>, ConnectError> {
        let hash = state_hash(state);
        // A selection that names no option is refused before the choice is
        // taken: a mistyped id must not cost the user their consent.
        if let Some(choice) = sessions::pending_choice(self.pool(), &hash)
            .await
            .map_err(storage_error)?
        {
            request::check_selection(selected, &choice)?;
        }
        let session = match sessions::take_choice(self.pool(), &hash).await {
            Ok(Taken::Fresh(session)) => *session,
            Ok(taken) => return Err(self.refused_state(taken)),
            Err(e) => return Err(storage_error(e)),
        };
        let provider: Provider = session
            .provider
            .parse()
            .map_err(|_| ConnectError::state_unknown())?;
        let result = self.choose_in(&hash, provider, &session, selected).await;
        let outcome = match &result {
            Ok(accounts) if accounts.iter().all(|a| a.registered.created) => "connected",
            Ok(_) => "reconnected",
            Err(error) => error.code,
        };
        crate::metrics::record_connect_completed(Some(provider), outcome);
        result
    }

    async fn choose_in(
        &self,
        hash: &[u8],
        provider: Provider,
        session: &SessionRow,
        selected: &[String],
    ) -> Result<Vec<Landed>, ConnectError> {
        let choice = session
            .choice
            .as_ref()
            .ok_or_else(ConnectError::state_unknown)?;
        request::check_selection(selected, choice)?;
        let secrets = sealed::open(self.inner.engine.keyring(), hash, session)?;
        let account_id = session
            .account_id
            .as_deref()
            .and_then(|id| id.parse::<AccountId>().ok());
        async {
            let accounts = self
                .connector(provider)?
                .choose(Chosen {
                    provider,
                    workspace_id: &session.workspace_id,
                    selected,
                    secrets: &secrets,
                    context: &choice["context"],
                })
                .await?;
            self.register_all(provider, account_id.as_ref(), accounts)
                .await
        }
        .await
        .map_err(|e| self.scrubbed(e, None, &secrets))
    }

    async fn register_all(
        &self,
        provider: Provider,
        reconnecting: Option<&AccountId>,
        accounts: Vec<ConnectedAccount>,
    ) -> Result<Vec<Landed>, ConnectError> {
        if accounts.is_empty() {
            return Err(ConnectError::identity_failed(
                "the platform named no account to connect",
            ));
        }
        if let Some(id) = reconnecting {
            let stored = accounts::get(self.pool(), id)
                .await
                .map_err(storage_error)?
                .ok_or_else(|| {
                    ConnectError::account_mismatch(format!("account {id} no longer exists"))
                })?;
            if accounts.len() != 1 || accounts[0].spec.external_id.trim() != stored.external_id {
                return Err(ConnectError::account_mismatch(format!(
                    "the platform account authorized is not the one account {id} is connected to: sign in as that account"
                )));
            }
        }
        let engine = &self.inner.engine;
        let mut landed = Vec::with_capacity(accounts.len());
        for ConnectedAccount { spec, mut warnings } in accounts {
            let new = spec.into_new_account(Utc::now()).map_err(|e| {
                ConnectError::identity_failed(format!("the platform's answer is unusable: {e}"))
            })?;
            if new.refresh_token.is_none() && engine.needs_refresh_token(provider) {
                warnings.push(match new.token_expires_at {
                    Some(at) => format!(
                        "the platform issued no refresh token: the account must be reconnected before {}",
                        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                    None => "the platform issued no refresh token: the account must be reconnected when its access token ends".to_owned(),
                });
            }
            let policy = engine.config().policy(provider);
            let registered = accounts::register(self.pool(), engine.keyring(), policy, &new)
                .await
                .map_err(storage_error)?;
            if registered.status_changed {
                crate::metrics::record_status_change(provider, AccountStatus::Active);
            }
            tracing::info!(account_id = %registered.account.id, %provider, created = registered.created, "account connected");
            landed.push(Landed {
                registered,
                warnings,
            });
        }
        Ok(landed)
    }

    /// The account a reconnect names: it must exist, on this platform and
    /// in this workspace.
    async fn reconnectable(
        &self,
        id: &str,
        provider: Provider,
        workspace_id: &str,
    ) -> Result<AccountId, ConnectError> {
        let id: AccountId = id
            .parse()
            .map_err(|_| ConnectError::invalid_request("account_id: not an account id"))?;
        let stored = accounts::get(self.pool(), &id)
            .await
            .map_err(storage_error)?
            .ok_or_else(|| ConnectError::invalid_request(format!("account_id: no account {id}")))?;
        if stored.provider != provider || stored.workspace_id != workspace_id {
            return Err(ConnectError::invalid_request(format!(
                "account_id: account {id} is not a {provider} account of this workspace"
            )));
        }
        Ok(id)
    }

    fn refused_state(&self, taken: Taken) -> ConnectError {
        match taken {
            Taken::Expired => ConnectError::state_expired(),
            Taken::Reused => ConnectError::state_reused(),
            Taken::Unknown | Taken::Fresh(_) => ConnectError::state_unknown(),
        }
    }

    /// Platform text may echo what was sent: the code, the PKCE verifier,
    /// a token, a client secret. Every error of a flow passes here on its
    /// way out, with everything secret the flow held.
    fn scrubbed(
        &self,
        mut error: ConnectError,
        code: Option<&SecretString>,
        session: &SessionSecrets,
    ) -> ConnectError {
        let held = [
            code,
            session.code_verifier.as_ref(),
            session.dpop_private_jwk.as_ref(),
            session.user_access_token.as_ref(),
            session.refresh_token.as_ref(),
        ];
        let secrets: Vec<&str> = self
            .inner
            .client_secrets
            .iter()
            .chain(held.into_iter().flatten())
            .map(|s| s.expose_secret())
            .collect();
        error.message = crate::scrub::scrub(&error.message, &secrets);
        error
    }

    fn pool(&self) -> &sqlx::PgPool {
        self.inner.engine.pool()
    }
}

/// A spawned flow's result. A panic is the caller's again; a task the
/// runtime dropped (shutting down) is an outage.
async fn to_the_end<T>(task: tokio::task::JoinHandle<T>) -> Result<T, ConnectError> {
    match task.await {
        Ok(result) => Ok(result),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Err(ConnectError::platform_unavailable(
            "the daemon is shutting down; try again",
        )),
    }
}

fn storage_error(error: sqlx::Error) -> ConnectError {
    tracing::error!(%error, "connect flow storage failed");
    ConnectError::platform_unavailable("the database is unavailable; try again")
}
