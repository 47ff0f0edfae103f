//! The daemon's atproto OAuth client metadata: the JSON document its client
//! id (a URL) must serve, which authorization servers fetch to learn the
//! redirect URI and what the client may ask for. There is no client secret:
//! the daemon is a public client whose tokens are DPoP-bound. The API serves
//! it at `<public_url>oauth/client-metadata.json`, the default client id; a
//! client id configured elsewhere must serve this same document.

use serde_json::{Value, json};

use crate::config::Settings;
use crate::domain::Provider;

/// The document, when the connect flow is on and a client id is known.
pub fn client_metadata(settings: &Settings) -> Option<Value> {
    let client_id = settings.bluesky_client_id()?;
    let callback = settings.connect.callback_url()?;
    let public_url = settings.connect.public_url.as_ref()?;
    let scopes = &settings.providers.get(Provider::Bluesky).connect_scopes;
    Some(json!({
        "client_id": client_id,
        "client_name": settings.connect.client_name,
        "client_uri": public_url.as_str(),
        "redirect_uris": [callback.as_str()],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": scopes.join(" "),
        "token_endpoint_auth_method": "none",
        "application_type": "web",
        "dpop_bound_access_tokens": true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use url::Url;

    fn settings(public_url: Option<&str>, client_id: Option<&str>) -> Settings {
        let mut settings = Settings::default();
        settings.connect.public_url = public_url.map(|u| Url::parse(u).unwrap());
        settings.providers.bluesky.client_id = client_id.map(str::to_owned);
        settings
    }

    #[test]
    fn the_document_names_the_callback_and_asks_for_dpop() {
        let settings = settings(Some("https://tokens.example.com/warden/"), None);
        let doc = client_metadata(&settings).unwrap();
        assert_eq!(
            doc["client_id"],
            "https://tokens.example.com/warden/oauth/client-metadata.json"
        );
        assert_eq!(
            doc["redirect_uris"],
            json!(["https://tokens.example.com/warden/v1/connect/callback"])
        );
        assert_eq!(doc["scope"], "atproto transition:generic");
        assert_eq!(doc["dpop_bound_access_tokens"], true);
        assert_eq!(doc["token_endpoint_auth_method"], "none");
        assert_eq!(doc["application_type"], "web");
        assert_eq!(
            doc["grant_types"],
            json!(["authorization_code", "refresh_token"])
        );
        assert_eq!(doc["response_types"], json!(["code"]));
        assert_eq!(doc["client_name"], "tokenwarden");
    }

    #[test]
    fn a_configured_client_id_wins() {
        let own = settings(
            Some("https://tokens.example.com/"),
            Some("https://app.example/atproto/client.json"),
        );
        assert_eq!(
            client_metadata(&own).unwrap()["client_id"],
            "https://app.example/atproto/client.json"
        );
        assert!(client_metadata(&settings(None, Some("https://app.example/c.json"))).is_none());
        assert!(client_metadata(&settings(None, None)).is_none());
    }
}
