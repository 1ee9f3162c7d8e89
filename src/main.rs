//! The `robeing` binary: everything lives in the library.

fn main() {
    std::process::exit(robeing::cli::main());
}
