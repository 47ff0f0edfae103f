//! Plain types shared by every part of the daemon: no I/O here.

mod account_id;
mod enums;
mod report;
mod tokens;

pub use account_id::{AccountId, InvalidAccountId};
pub use enums::{AccountStatus, ConnectionType, Outcome, Provider, Trigger, UnknownVariant};
pub use report::RefreshReport;
pub use tokens::{AccessToken, RefreshToken};
