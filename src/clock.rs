//! The one clock: tokio's, read as a std `Instant` because every time in `Status` is one.
//!
//! It is the only clock pyinit reads for deadlines and ages, so a test that pauses tokio's time
//! controls all of them; clippy.toml bans std's `Instant::now` and `elapsed` everywhere else. The
//! pure files never read it (tidy checks): the supervisor, the probe counters and the health
//! routes are given `now` as a parameter.

use std::time::Instant;

/// The runtime's clock (paused in tests), as a std `Instant` like every time in `Status`.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_clock_is_the_runtimes() {
        let before = now();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(now() - before, Duration::from_secs(3600));
    }
}
