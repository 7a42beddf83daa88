//! The `trellis` command: serve, migrate, bundles, users and tokens.

mod cli;

/// mimalloc rather than the system allocator: imports, rules and JSON allocate many small
/// values, and glibc's malloc and free took a fifth of an import's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
