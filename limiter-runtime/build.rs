//! Sets `limiter_doc_cfg` when the compiler is a nightly, so that docs.rs
//! (which documents with a nightly and `--cfg docsrs`) shows which feature
//! each item needs (`doc(cfg)`, still unstable), while `cargo +stable doc`
//! with `--cfg docsrs` keeps building.

use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC");
    println!("cargo:rustc-check-cfg=cfg(limiter_doc_cfg)");
    println!("cargo:rustc-check-cfg=cfg(docsrs)");
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let nightly = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .is_some_and(|v| v.contains("nightly") || v.contains("-dev"));
    if nightly {
        println!("cargo:rustc-cfg=limiter_doc_cfg");
    }
}
