// Only the Node build links against Node's N-API symbols.
fn main() {
    // Without this, cargo reruns the script (and rebuilds the crate) whenever any file of the
    // package changes, e.g. the index.d.ts and binding.js the napi build regenerates.
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_FEATURE_NODE").is_ok() {
        napi_build::setup();
    }
}
