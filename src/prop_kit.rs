//! Test builds only: what the property tests (`*_props.rs`) share. How many cases a property runs
//! (its CI count, `PROPTEST_CASES`, or as many as fit in `FUZZ_SECONDS`, see `scripts/fuzz.sh`),
//! and arbitrary JSON shaped like our inputs (known keys mixed with any others, strings that look
//! like sizes, durations, times, URLs and JSON text mixed with any unicode).

use std::time::Instant;

use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseResult, TestError, TestRunner};
use serde_json::{Map, Number, Value};

/// Runs `test` over `strategy`: `ci_cases` cases (or `PROPTEST_CASES`), or, with `FUZZ_SECONDS`
/// set, batches of that many with fresh seeds until the time is up. A failure panics with the
/// shrunk input; its seed is kept in `proptest-regressions/` beside `source_file` and replayed
/// first on every later run. Prints the cases run and their rate either way.
pub fn check<S: Strategy>(
    name: &str,
    source_file: &'static str,
    ci_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> TestCaseResult,
) {
    let env = |k: &str| std::env::var(k).ok().filter(|s| !s.trim().is_empty());
    let cases = env("PROPTEST_CASES").and_then(|s| s.parse().ok()).unwrap_or(ci_cases).max(1);
    let budget = env("FUZZ_SECONDS").and_then(|s| s.parse::<f64>().ok());
    let config = Config { cases, source_file: Some(source_file), ..Config::default() };
    let started = Instant::now();
    let mut total = 0u64;
    loop {
        let mut runner = TestRunner::new(config.clone());
        match runner.run(&strategy, &test) {
            Ok(()) => total += u64::from(cases),
            Err(TestError::Fail(why, input)) => {
                panic!("{name}: failed after {total}+ cases: {why}\nminimal failing input: {input:#?}")
            }
            Err(TestError::Abort(why)) => panic!("{name}: aborted after {total}+ cases: {why}"),
        }
        if budget.is_none_or(|b| started.elapsed().as_secs_f64() >= b) {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("fuzz {name}: {total} cases in {secs:.2} s ({:.0}/s), 0 failures", total as f64 / secs.max(1e-9));
}

/// Strings our parsers meet: any unicode (NUL, controls, quotes, astral), and near misses of
/// every format they read.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        1 => "[ -~]{0,12}",
        1 => select(TRICKY).prop_map(str::to_string),
        1 => r"[ +-]?[0-9]{0,20}(\.[0-9]{0,5})?[eE]?[ ]?(b|k|kb|KiB|mb|MiB|g|GB|t|tb|ms|s|sec|m|min|h|hr|d|days|w|x)?",
        1 => r"[0-9+-]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9+-]{2}:[0-9+-]{2}(:[0-9+-]{2}(\.[0-9]{0,12})?)?)?(Z|z|[+-][0-9+]{2}(:?[0-9]{2})?)?",
        1 => r"(postgres|postgresql|redis|rediss|unix|http)://[a-z@:.0-9/?=&%,#-]{0,30}",
        1 => r#"[\[\]{}":,0-9a-z\\ ]{0,16}"#,
    ]
}

const TRICKY: &[&str] = &[
    "",
    " ",
    "\0",
    "\"",
    "'",
    "\\",
    "null",
    "{}",
    "[]",
    "\"\\\"x\\\"\"",
    "\"{}\"",
    "1e400",
    "-0",
    "18446744073709551616",
    "9223372036854775808",
    "NaN",
    "Infinity",
    "2026-02-30T24:60:61Z",
    "0000-01-01",
    "9999-12-31T23:59:59.999999+14:00",
    "500MB",
    "1.5GB",
    "24h",
    ".5s",
    "99999999999999999999w",
    "postgres://u:p@h/db?sslmode=verify-full&sslrootcert=/nope",
    "host=x sslmode=require",
    "redis://a:1,redis://b:2",
    "rediss://h:6379/#insecure",
    "LRU",
    "LFU",
    "AGE",
    "hot",
    "warm",
    "cold",
    "active",
    "closed",
    "\u{202e}\u{feff}\u{1F600}",
];

/// Any JSON value, up to 4 levels deep, object keys drawn from `keys` half the time.
pub fn json(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        select(&[0i64, 1, -1, 2, 3, 10, 22, 23, 64, 65, 1000, 1024, 100_000, 1_000_000, 1_000_001][..])
            .prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| Number::from_f64(f).map(Value::Number)),
        (0.0f64..=1.0).prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array), object(keys, inner),]
    })
}

/// An object whose keys are mostly from `keys`, with values from `values`.
pub fn object(keys: &'static [&'static str], values: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    prop::collection::vec((key(keys), values), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()))
}

fn key(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![3 => select(keys).prop_map(str::to_string), 1 => text()]
}
