//! Compile-time behaviour of the attributes: every invalid argument is an
//! error at its token (`tests/ui/fail`, with reviewed `.stderr` files), and
//! every supported function shape compiles and runs (`tests/ui/pass`).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
