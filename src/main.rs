use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mlp::alloc::CacheAligned = mlp::alloc::CacheAligned;

fn main() -> ExitCode {
    let code = match mlp::cli::parse(std::env::args_os()) {
        Ok(parsed) => mlp::commands::run(parsed),
        Err(code) => code,
    };
    ExitCode::from(code)
}
