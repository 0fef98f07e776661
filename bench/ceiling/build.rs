//! The floor is linked as pyinit is (its build.rs): without unwind tables when rust-lld links a
//! release build, so that the two compare like with like.

use std::env;
use std::path::Path;

fn main() {
    let script = Path::new("../../link/discard-unwind-tables.ld");
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
