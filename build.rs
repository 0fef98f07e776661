//! Build script: one linker input for pyinit's static release binaries, and nothing else.
//!
//! When the binary is linked by rust-lld (`.cargo/config.toml` sets it for the musl targets), a
//! release build drops the unwind tables (`link/discard-unwind-tables.ld` says why: pyinit aborts
//! on panic). Any other linker, or a debug build, gets nothing: their builds stay as cargo
//! makes them. A build script because the script's path must be absolute, and cargo's
//! `rustflags` cannot say "relative to this repository".

use std::env;
use std::path::Path;

fn main() {
    let script = Path::new("link/discard-unwind-tables.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let linked_by_lld = env::var("RUSTC_LINKER").is_ok_and(|linker| linker.ends_with("rust-lld"));
    let release = env::var("PROFILE").is_ok_and(|profile| profile == "release");
    if linked_by_lld
        && release
        && let Ok(manifest_dir) = env::var("CARGO_MANIFEST_DIR")
    {
        let script = Path::new(&manifest_dir).join(script);
        println!("cargo:rustc-link-arg-bins={}", script.display());
    }
}
