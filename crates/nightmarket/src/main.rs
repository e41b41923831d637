//! `nightmarket`: see `nightmarket --help`. The subcommands live in the library; the end-to-end
//! tests run this very binary as a child process (`CARGO_BIN_EXE_nightmarket`).

fn main() -> std::process::ExitCode {
    nightmarket::main()
}
