//! Logging: tracing events on stderr as text or JSON; stdout belongs to the app.
//!
//! Field names used across pyinit are fixed here so that every event spells them the same way.

use tracing::level_filters::LevelFilter;

use crate::config::cli::{LogFormat, LogLevel};

/// Installs the global subscriber. Called once, early in set-up.
pub fn init_logging(format: LogFormat, level: LogLevel) {
    let filter = match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(filter)
        .with_target(false)
        .with_ansi(false);
    // A second initialisation (never done) would only keep the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
