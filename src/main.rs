use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(mlp::cli::run(std::env::args_os()))
}
