use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mlp::alloc::CacheAligned = mlp::alloc::CacheAligned;

fn main() -> ExitCode {
    ExitCode::from(mlp::cli::run(std::env::args_os()))
}
