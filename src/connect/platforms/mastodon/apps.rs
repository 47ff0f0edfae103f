//! The apps the daemon registers on Mastodon instances: one per instance,
//! callback and scope set, shared by every user of that instance and every
//! replica (`connect_apps`), its client secret encrypted at rest.
//!
//! An instance can lose an app (an admin removed it, the server was rebuilt).
//! The daemon cannot see the authorization page's "unknown client", so a
//! cached app is confirmed with a client-credentials grant before a browser
//! is sent to it (at most once per `RECHECK` per process), and one the token
//! endpoint calls `invalid_client` is forgotten at once. Either way the next
//! start registers a new app.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::answers::{RegisteredApp, registered_app};
use crate::connect::ConnectError;
use crate::crypto::Field;
use crate::engine::Engine;
use crate::providers::{HttpClient, OAuth2Refresh, ProviderError};
use crate::store::connect::{self as store, AppKey, AppRow};

/// How long a confirmation holds: an app removed meanwhile costs its users
/// one failed authorization at most this long.
const RECHECK: Duration = Duration::from_secs(300);

/// Doorkeeper's answer for a client it does not know.
pub const INVALID_CLIENT: &str = "invalid_client";

pub struct Apps {
    http: HttpClient,
    engine: Engine,
    client_name: String,
    /// client_id -> when this process last saw the instance accept it.
    confirmed: Mutex<HashMap<String, Instant>>,
}

/// Where an app is registered, and for what.
pub struct AppFor<'a> {
    /// `https://host[:port]`, as the guard accepted it.
    pub origin: &'a Url,
    pub redirect_uri: &'a Url,
    /// Space-separated, sorted: one app per scope set, whatever the order.
    pub scopes: &'a str,
}

impl AppFor<'_> {
    fn origin_text(&self) -> String {
        self.origin.origin().ascii_serialization()
    }

    fn endpoint(&self, path: &str) -> Result<Url, ConnectError> {
        self.origin
            .join(path)
            .map_err(|_| ConnectError::invalid_request("extras.instance: cannot build its URLs"))
    }
}

enum Standing {
    Known,
    Gone,
    /// The instance did not say (an outage, an odd answer): the app is used,
    /// and the authorization page will tell.
    Unsure,
}

impl Apps {
    pub fn new(http: HttpClient, engine: Engine, client_name: String) -> Self {
        Self {
            http,
            engine,
            client_name,
            confirmed: Mutex::new(HashMap::new()),
        }
    }

    /// The app to send a browser to: the cached one while the instance
    /// knows it, else a new registration.
    pub async fn for_authorization(&self, at: &AppFor<'_>) -> Result<RegisteredApp, ConnectError> {
        if let Some(app) = self.cached(at).await? {
            match self.standing(at, &app).await {
                Standing::Known | Standing::Unsure => return Ok(app),
                Standing::Gone => {
                    tracing::warn!(instance = %at.origin_text(), "the instance no longer knows its app; registering a new one");
                    self.forget(at, &app.client_id).await?;
                }
            }
        }
        self.register(at).await
    }

    /// The app an authorization was made for, if it is still cached.
    pub async fn for_exchange(
        &self,
        at: &AppFor<'_>,
        client_id: &str,
    ) -> Result<Option<RegisteredApp>, ConnectError> {
        Ok(self
            .cached(at)
            .await?
            .filter(|app| app.client_id == client_id))
    }

    /// Drops an app its instance no longer knows.
    pub async fn forget(&self, at: &AppFor<'_>, client_id: &str) -> Result<(), ConnectError> {
        self.confirmed_lock().remove(client_id);
        let origin = at.origin_text();
        store::drop_app(self.engine.pool(), &key(at, &origin), client_id)
            .await
            .map_err(storage_error)?;
        Ok(())
    }

    async fn cached(&self, at: &AppFor<'_>) -> Result<Option<RegisteredApp>, ConnectError> {
        let origin = at.origin_text();
        let Some(row) = store::find_app(self.engine.pool(), &key(at, &origin))
            .await
            .map_err(storage_error)?
        else {
            return Ok(None);
        };
        match self.open(&origin, &row) {
            Ok(secret) => Ok(Some(RegisteredApp {
                client_id: row.client_id,
                client_secret: secret,
            })),
            // Its key was retired, or the row was tampered with: the app is
            // useless here, and a new one is registered in its place.
            Err(why) => {
                tracing::warn!(instance = %origin, error = %why, "cached app secret unreadable; registering a new app");
                self.forget(at, &row.client_id).await?;
                Ok(None)
            }
        }
    }

    async fn register(&self, at: &AppFor<'_>) -> Result<RegisteredApp, ConnectError> {
        let form = [
            ("client_name", self.client_name.as_str()),
            ("redirect_uris", at.redirect_uri.as_str()),
            ("scopes", at.scopes),
        ];
        let builder = self
            .http
            .inner()
            .post(at.endpoint("api/v1/apps")?)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form);
        let reply = self
            .http
            .send(builder)
            .await
            .map_err(|e| ConnectError::from_provider("app registration", e))?;
        let app = registered_app(&reply)?;
        let origin = at.origin_text();
        let keyring = self.engine.keyring();
        let sealed = AppRow {
            client_secret: keyring.encrypt_for(
                &owner(&origin, &app.client_id),
                Field::ClientSecret,
                app.client_secret.expose_secret(),
            ),
            client_secret_key_id: keyring.primary_key_id().to_owned(),
            client_id: app.client_id,
        };
        // Another replica may have registered at the same moment: every
        // replica uses the one stored first.
        let stored = store::save_app(self.engine.pool(), &key(at, &origin), &sealed)
            .await
            .map_err(storage_error)?;
        let secret = self
            .open(&origin, &stored)
            .map_err(|why| ConnectError::invalid_request(format!("the app's secret: {why}")))?;
        tracing::info!(instance = %origin, "app registered on the instance");
        Ok(RegisteredApp {
            client_id: stored.client_id,
            client_secret: secret,
        })
    }

    /// A client-credentials grant says whether the instance still knows the
    /// app; the app token it yields is revoked at once.
    async fn standing(&self, at: &AppFor<'_>, app: &RegisteredApp) -> Standing {
        let fresh = self
            .confirmed_lock()
            .get(&app.client_id)
            .is_some_and(|at| at.elapsed() < RECHECK);
        if fresh {
            return Standing::Known;
        }
        let standing = match self.app_token(at, app).await {
            Ok(token) => {
                self.revoke(at, app, &token).await;
                Standing::Known
            }
            Err(e) if e.code.as_deref() == Some(INVALID_CLIENT) => Standing::Gone,
            Err(e) => {
                let said = scrubbed(&e.message, app);
                tracing::debug!(instance = %at.origin_text(), error = %said, "app check inconclusive");
                Standing::Unsure
            }
        };
        if matches!(standing, Standing::Known) {
            let mut confirmed = self.confirmed_lock();
            confirmed.retain(|_, seen| seen.elapsed() < RECHECK);
            confirmed.insert(app.client_id.clone(), Instant::now());
        }
        standing
    }

    async fn app_token(
        &self,
        at: &AppFor<'_>,
        app: &RegisteredApp,
    ) -> Result<SecretString, ProviderError> {
        let url = at
            .endpoint("oauth/token")
            .map_err(|e| ProviderError::transient(e.message))?;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", app.client_id.as_str()),
            ("client_secret", app.client_secret.expose_secret()),
            ("scope", at.scopes),
        ];
        let builder = self
            .http
            .inner()
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form);
        let reply = self.http.send(builder).await?;
        let grant = OAuth2Refresh::interpret(&reply)?;
        Ok(SecretString::from(grant.access_token.expose().to_owned()))
    }

    /// Best effort: a token left behind is an app token, which can act on
    /// no account.
    async fn revoke(&self, at: &AppFor<'_>, app: &RegisteredApp, token: &SecretString) {
        let Ok(url) = at.endpoint("oauth/revoke") else {
            return;
        };
        let form = [
            ("client_id", app.client_id.as_str()),
            ("client_secret", app.client_secret.expose_secret()),
            ("token", token.expose_secret()),
        ];
        let builder = self.http.inner().post(url).form(&form);
        if let Err(e) = self.http.send(builder).await {
            let said = scrubbed(&e.message, app);
            tracing::debug!(instance = %at.origin_text(), error = %said, "app token not revoked");
        }
    }

    fn open(&self, origin: &str, row: &AppRow) -> Result<SecretString, String> {
        self.engine
            .keyring()
            .decrypt_for(
                &owner(origin, &row.client_id),
                Field::ClientSecret,
                &row.client_secret_key_id,
                &row.client_secret,
            )
            .map_err(|e| e.to_string())
    }

    fn confirmed_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.confirmed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn key<'a>(at: &'a AppFor<'_>, origin: &'a str) -> AppKey<'a> {
    AppKey {
        provider: crate::domain::Provider::Mastodon.as_str(),
        origin,
        redirect_uri: at.redirect_uri.as_str(),
        scopes: at.scopes,
    }
}

/// The secret is bound to its instance and app: a ciphertext copied to
/// another row does not open.
fn owner(origin: &str, client_id: &str) -> String {
    format!("mastodon-app/{origin}/{client_id}")
}

/// The instance's words may echo what was sent to it.
fn scrubbed(text: &str, app: &RegisteredApp) -> String {
    crate::scrub::scrub(text, &[app.client_secret.expose_secret()])
}

fn storage_error(error: sqlx::Error) -> ConnectError {
    tracing::error!(%error, "connect apps storage failed");
    ConnectError::platform_unavailable("the database is unavailable; try again")
}
