fn main() {
    // Only the Node build links against Node's N-API symbols.
    if std::env::var("CARGO_FEATURE_NODE").is_ok() {
        napi_build::setup();
    }
}
