//! The `movielake` binary: the operator CLI and, as `movielake serve`, the Functions custom
//! handler. Everything is in the library; see [`movielake::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    movielake::cli::main()
}
