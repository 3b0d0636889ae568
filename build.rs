//! Names the facade's private module after the crate version, as thiserror
//! does: `pub mod __private_0_1_0 { pub use crate::private::*; }`. The
//! attribute macros (the same workspace version, pinned with `=`) expand to
//! paths through it, so a `limiter-macros` of another version than this
//! facade fails to compile at once, naming the missing module.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let version = env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION");
    // The same spelling as `limiter-macros`' `spec::private_module`.
    let suffix: String = version
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let module = format!(
        "#[doc(hidden)]\npub mod __private_{suffix} {{\n    #[doc(hidden)]\n    pub use crate::private::*;\n}}\n"
    );
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out_dir.join("private.rs"), module).expect("OUT_DIR is writable");
}
