//! Release builds of the `slipway` binary place the functions an idle Slipway
//! runs (startup, the Discord gateway and the Matrix sync loop: listed in
//! `link/symbol-order.txt`) next to each other. The kernel maps a binary's
//! code in 64 KiB runs around each page that is executed, so scattered hot
//! functions make most of the text resident; packed together they make a few
//! megabytes resident (BENCHMARKS.md, "idle RSS"). Relative relocations are
//! packed (RELR) for the same reason. `benches/order-symbols.sh`
//! regenerates the list; names it no longer finds are ignored, so a stale
//! list costs only memory, never correctness.

fn main() {
    println!("cargo:rerun-if-changed=link/symbol-order.txt");
    println!("cargo:rerun-if-changed=build.rs");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    // rust-lld is the default linker of this target since Rust 1.90; the
    // option is lld's.
    let lld_target = std::env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu");
    let order = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("link/symbol-order.txt");
    if release && lld_target && order.is_file() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
    if release && lld_target {
        // RELR: the ~100,000 relative relocations of a position-independent
        // binary in a few kilobytes instead of 2.2 MB that the dynamic loader
        // reads at every start (glibc 2.36+, e.g. Debian 12).
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
