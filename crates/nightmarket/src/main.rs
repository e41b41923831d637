//! `nightmarket`: see `nightmarket --help`. Everything lives in the library so the test suite
//! can run the very same entry point as a separate process.

fn main() -> std::process::ExitCode {
    nightmarket::main()
}
