//! Moving accounts in and out in bulk: `accounts import` and
//! `POST /v1/accounts:import` read NDJSON (one registration body per line,
//! or lines of an export), `accounts export` writes it.
//!
//! `lines` reads bounded lines in constant memory, `record` judges a line
//! (with the registration rules themselves) and is the export's shape,
//! `seal` keeps exported credentials sealed to an age recipient, `import`
//! batches lines into transactions, `export` pages accounts out.

mod export;
mod import;
mod lines;
mod record;
mod seal;

pub use export::{ExportError, ExportOptions, export};
pub use import::{Import, ImportContext, ImportOptions, LineResult, Outcome, ReadError, Summary};
pub use lines::{Line, Lines};
pub use record::{EXPORT_FORMAT, ExportRecord, LineError, RefreshFields};
pub use seal::{Credentials, Identities, Recipient};
