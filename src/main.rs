use std::process::ExitCode;

fn main() -> ExitCode {
    tokenwarden::cli::main()
}
