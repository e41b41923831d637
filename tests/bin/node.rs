//! The `nightmarket` binary, under another name so the end-to-end tests can spawn it.

fn main() -> std::process::ExitCode {
    nightmarket::main()
}
