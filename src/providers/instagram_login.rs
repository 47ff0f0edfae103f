//! Instagram API with Instagram Login: `ig_refresh_token` on
//! graph.instagram.com (see `long_lived` for the flow and its error table).
//! Needs the `instagram_business_basic` permission. Whether the refreshed
//! token differs from the one sent is undocumented: whatever comes back is
//! stored.

use crate::config::ProviderSettings;
use crate::providers::{HttpClient, LongLivedRefresh};

pub fn from_settings(settings: &ProviderSettings, http: HttpClient) -> Option<LongLivedRefresh> {
    LongLivedRefresh::new("Instagram", "ig_refresh_token", settings, http)
}
