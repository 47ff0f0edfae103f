//! `tokenwarden check-config`: validate the configuration and print a
//! summary without secrets.

use tokenwarden::app;
use tokenwarden::config::{Flow, Settings};
use tokenwarden::domain::Provider;
use tokenwarden::store;

pub(super) fn run(settings: &Settings) -> anyhow::Result<()> {
    let keyring = app::keyring(settings)?;
    let db = store::connect_options(&settings.database, None)?;
    println!("configuration is valid");
    println!(
        "database: {}:{}/{}",
        db.get_host(),
        db.get_port(),
        db.get_database().unwrap_or("(default)")
    );
    println!(
        "encryption keys (newest first): {}",
        keyring.key_ids().collect::<Vec<_>>().join(", ")
    );
    println!("provider                  flow            client   token endpoint");
    for provider in Provider::ALL {
        let section = settings.providers.get(*provider);
        let flow = match section.flow {
            Flow::Oauth2Refresh => "oauth2_refresh",
            Flow::X => "x",
            Flow::Linkedin => "linkedin",
            Flow::Tiktok => "tiktok",
            Flow::InstagramLogin => "instagram_login",
            Flow::Threads => "threads",
            Flow::Mastodon => "mastodon",
            Flow::Google => "google",
            Flow::Pinterest => "pinterest",
            Flow::Facebook => "facebook",
            Flow::Bluesky => "bluesky",
            Flow::None => "none",
        };
        let client = if section.client_id.is_some() {
            "set"
        } else {
            "unset"
        };
        let url = section
            .token_url
            .as_ref()
            .map(|u| u.as_str())
            .unwrap_or("-");
        println!("{:<25} {flow:<15} {client:<8} {url}", provider.as_str());
    }
    for warning in settings.warnings() {
        println!("warning: {warning}");
    }
    Ok(())
}
