//! The `tokenwarden` binary: the command line over the library, and the
//! demo (which alone pulls in the fake platforms, behind the `demo` feature).

use std::process::ExitCode;

mod cli;
#[cfg(feature = "demo")]
mod demo;

fn main() -> ExitCode {
    cli::main()
}
