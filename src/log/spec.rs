//! The log's flags: `--log-format` and `--log-level`. Pure; the subscriber is `log/mod.rs`'s.

/// `--log-format`: the shape of each line on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `--log-level`: the least severe level shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}
