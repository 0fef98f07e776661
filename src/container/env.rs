//! The environment the app gets from the container's facts and pyinit's defaults:
//! `WEB_CONCURRENCY`, `PYTHON_CPU_COUNT`, `PYINIT_CPU_LIMIT`, `PYINIT_MEMORY_LIMIT_BYTES`,
//! `PYTHONUNBUFFERED` and `PYTHONFAULTHANDLER`, each only when pyinit's own environment does not
//! already have it, so an app's own setting always wins (an empty `PYTHONFAULTHANDLER` is how an
//! app turns faulthandler off, and it is kept like any other value).
//!
//! Pure: the facts, the settings from the flags and pyinit's current environment are parameters;
//! `main` puts the result on the app's `SpawnSpec`, never into pyinit's own environment.

use std::ffi::OsString;
use std::num::NonZeroU32;

use super::facts::ContainerFacts;

/// `--web-concurrency`: how `WEB_CONCURRENCY` is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WebConcurrency {
    /// floor(2 × cpus + 1), from the CPU limit or the host's CPUs.
    #[default]
    Auto,
    /// Do not set it.
    Off,
    Fixed(NonZeroU32),
}

/// Parses `--web-concurrency`: `auto`, `off` or a positive number of workers.
pub fn parse_web_concurrency(text: &str) -> Result<WebConcurrency, String> {
    match text.trim() {
        "auto" => Ok(WebConcurrency::Auto),
        "off" => Ok(WebConcurrency::Off),
        number => number
            .parse::<NonZeroU32>()
            .map(WebConcurrency::Fixed)
            .map_err(|_| "expected auto, off or a number of workers from 1".to_owned()),
    }
}

/// What the flags say about the app's environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppEnvSettings {
    pub web_concurrency: WebConcurrency,
    /// `--python-env on`: set `PYTHONUNBUFFERED`, `PYTHONFAULTHANDLER` and `PYTHON_CPU_COUNT`.
    pub python_env: bool,
}

impl Default for AppEnvSettings {
    fn default() -> Self {
        AppEnvSettings {
            web_concurrency: WebConcurrency::Auto,
            python_env: true,
        }
    }
}

/// The variables for the app, and the ones pyinit left alone because they were already set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppEnvironment {
    /// Set on the app's command, in this order.
    pub set: Vec<(&'static str, String)>,
    /// Already in pyinit's environment, so the app keeps its own value.
    pub kept: Vec<&'static str>,
    /// The `WEB_CONCURRENCY` pyinit chose from the CPUs (`--web-concurrency auto`) and set: the
    /// worker count it may keep following as the CPU limit moves. `None` for a fixed count,
    /// `off`, or the app's own value.
    pub chosen_workers: Option<u32>,
}

impl AppEnvironment {
    /// The variables as the `SpawnSpec` wants them.
    pub fn to_os_pairs(&self) -> Vec<(OsString, OsString)> {
        self.set
            .iter()
            .map(|(name, value)| (OsString::from(name), OsString::from(value)))
            .collect()
    }

    /// `WEB_CONCURRENCY=4 PYTHONUNBUFFERED=1`, for the start-up log line.
    pub fn describe(&self) -> String {
        let set = self
            .set
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>();
        set.join(" ")
    }
}

/// Workers for `cpus` CPUs given in thousandths: floor(2 × cpus + 1), so 0.5 → 2, 1 → 3, 1.5 → 4,
/// 2 → 5. The usual gunicorn advice, kept in integers so that 1.5 is exactly 1.5.
pub fn web_concurrency_for(millicpus: u64) -> u64 {
    (2 * millicpus + 1000) / 1000
}

/// The CPU count Python should report: the CPUs rounded up, at least 1.
pub fn python_cpu_count_for(millicpus: u64) -> u64 {
    millicpus.div_ceil(1000).max(1)
}

/// `1500` → `1.5`, `2000` → `2`, `250` → `0.25`.
pub fn format_millicpus(millicpus: u64) -> String {
    let whole = millicpus / 1000;
    let fraction = millicpus % 1000;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:03}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// The app's extra environment. `current_env` is pyinit's own environment: a variable already in it
/// is never overridden (it reaches the app unchanged), whatever the flags say. A health sidecar
/// (`has_app` false) has no app to size, so it sets none: its exec probes see pyinit's own
/// environment.
pub fn app_environment(
    facts: &ContainerFacts,
    settings: AppEnvSettings,
    current_env: &[(OsString, OsString)],
    has_app: bool,
) -> AppEnvironment {
    let mut environment = AppEnvironment::default();
    if !has_app {
        return environment;
    }
    let apps_own_web_concurrency = current_env.iter().any(|(key, _)| key == "WEB_CONCURRENCY");
    if settings.web_concurrency == WebConcurrency::Auto && !apps_own_web_concurrency {
        environment.chosen_workers = (facts.effective_millicpus())
            .and_then(|millicpus| u32::try_from(web_concurrency_for(millicpus)).ok());
    }
    let mut offer = |name: &'static str, value: Option<String>| {
        let Some(value) = value else { return };
        if current_env.iter().any(|(key, _)| key == name) {
            environment.kept.push(name);
        } else {
            environment.set.push((name, value));
        }
    };
    let millicpus = facts.effective_millicpus();
    let web_concurrency = match settings.web_concurrency {
        WebConcurrency::Auto => millicpus.map(web_concurrency_for),
        WebConcurrency::Off => None,
        WebConcurrency::Fixed(workers) => Some(u64::from(workers.get())),
    };
    offer("WEB_CONCURRENCY", web_concurrency.map(|n| n.to_string()));
    if settings.python_env {
        offer(
            "PYTHON_CPU_COUNT",
            millicpus.map(|m| python_cpu_count_for(m).to_string()),
        );
    }
    offer(
        "PYINIT_CPU_LIMIT",
        facts
            .cpu_limit
            .limited()
            .map(|quota| format_millicpus(quota.millicpus())),
    );
    offer(
        "PYINIT_MEMORY_LIMIT_BYTES",
        facts
            .memory_limit_bytes
            .limited()
            .map(|bytes| bytes.to_string()),
    );
    if settings.python_env {
        // Python buffers stdout when it is a pipe, so without this a container's logs arrive in
        // blocks, late, and are lost if the app is killed.
        offer("PYTHONUNBUFFERED", Some("1".to_owned()));
        // faulthandler prints every thread's traceback when a fatal signal arrives, even while
        // a thread is blocked in C: the dump signal at the drain deadline relies on it, and a
        // real crash (a segfault in an extension) gets its traceback too.
        offer("PYTHONFAULTHANDLER", Some("1".to_owned()));
    }
    environment
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::cgroup::CpuQuota;
    use crate::container::facts::Limit;

    fn facts(cpu_limit: Option<(u64, u64)>, memory: Option<u64>, host_cpus: u32) -> ContainerFacts {
        ContainerFacts {
            cpu_limit: cpu_limit.map_or(Limit::Unlimited, |(quota_us, period_us)| {
                Limit::Limited(CpuQuota {
                    quota_us,
                    period_us,
                })
            }),
            memory_limit_bytes: memory.map_or(Limit::Unlimited, Limit::Limited),
            host_cpus: Some(host_cpus),
            cpu_cgroup: None,
            memory_cgroup: None,
        }
    }

    fn value<'a>(environment: &'a AppEnvironment, name: &str) -> Option<&'a str> {
        environment
            .set
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn web_concurrency_formula() {
        for (millicpus, workers) in [
            (500, 2),
            (1000, 3),
            (1500, 4),
            (2000, 5),
            (250, 1),
            (4000, 9),
        ] {
            assert_eq!(web_concurrency_for(millicpus), workers, "{millicpus}m");
        }
        for (millicpus, count) in [(500, 1), (1000, 1), (1500, 2), (2000, 2), (1, 1)] {
            assert_eq!(python_cpu_count_for(millicpus), count, "{millicpus}m");
        }
    }

    #[test]
    fn millicpus_print_as_kubernetes_writes_cpus() {
        assert_eq!(format_millicpus(1500), "1.5");
        assert_eq!(format_millicpus(2000), "2");
        assert_eq!(format_millicpus(250), "0.25");
        assert_eq!(format_millicpus(333), "0.333");
        assert_eq!(format_millicpus(1), "0.001");
    }

    #[test]
    fn limits_from_quota_and_memory() {
        let environment = app_environment(
            &facts(Some((150000, 100000)), Some(268435456), 8),
            AppEnvSettings::default(),
            &[],
            true,
        );
        assert_eq!(
            environment.describe(),
            "WEB_CONCURRENCY=4 PYTHON_CPU_COUNT=2 PYINIT_CPU_LIMIT=1.5 \
             PYINIT_MEMORY_LIMIT_BYTES=268435456 PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1"
        );
        assert!(environment.kept.is_empty());
        // pyinit chose the count: it may follow the CPU limit.
        assert_eq!(environment.chosen_workers, Some(4));
        for (quota_us, workers) in [(50000, "2"), (100000, "3"), (200000, "5")] {
            let environment = app_environment(
                &facts(Some((quota_us, 100000)), None, 8),
                AppEnvSettings::default(),
                &[],
                true,
            );
            assert_eq!(value(&environment, "WEB_CONCURRENCY"), Some(workers));
        }
    }

    #[test]
    fn without_quota_the_host_cpus_count() {
        let environment =
            app_environment(&facts(None, None, 2), AppEnvSettings::default(), &[], true);
        assert_eq!(
            environment.describe(),
            "WEB_CONCURRENCY=5 PYTHON_CPU_COUNT=2 PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1"
        );
        // Nothing known about the CPUs: no guess.
        let mut unknown = facts(None, None, 2);
        unknown.host_cpus = None;
        unknown.cpu_limit = Limit::Unknown;
        let environment = app_environment(&unknown, AppEnvSettings::default(), &[], true);
        assert_eq!(
            environment.describe(),
            "PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1"
        );
        assert_eq!(environment.chosen_workers, None);
    }

    #[test]
    fn a_health_sidecar_gets_no_variables() {
        let limited = facts(Some((150000, 100000)), Some(1 << 30), 8);
        let environment = app_environment(&limited, AppEnvSettings::default(), &[], false);
        assert_eq!(environment, AppEnvironment::default());
    }

    #[test]
    fn variables_already_set_are_kept() {
        let current_env = vec![
            (OsString::from("WEB_CONCURRENCY"), OsString::from("9")),
            (OsString::from("PYTHONUNBUFFERED"), OsString::from("")),
            (OsString::from("PYTHONFAULTHANDLER"), OsString::from("")),
            (OsString::from("PATH"), OsString::from("/usr/bin")),
        ];
        let environment = app_environment(
            &facts(Some((150000, 100000)), None, 8),
            AppEnvSettings::default(),
            &current_env,
            true,
        );
        assert_eq!(
            environment.describe(),
            "PYTHON_CPU_COUNT=2 PYINIT_CPU_LIMIT=1.5"
        );
        assert_eq!(
            environment.kept,
            ["WEB_CONCURRENCY", "PYTHONUNBUFFERED", "PYTHONFAULTHANDLER"]
        );
        // The app's own count is the app's: pyinit does not follow it.
        assert_eq!(environment.chosen_workers, None);
        // Even an explicit --web-concurrency leaves the app's own value alone.
        let settings = AppEnvSettings {
            web_concurrency: WebConcurrency::Fixed(NonZeroU32::new(7).unwrap()),
            python_env: true,
        };
        let environment = app_environment(&facts(None, None, 2), settings, &current_env, true);
        assert_eq!(value(&environment, "WEB_CONCURRENCY"), None);
    }

    #[test]
    fn flags_override_or_turn_off() {
        let limited = facts(Some((150000, 100000)), Some(1 << 30), 8);
        let fixed = AppEnvSettings {
            web_concurrency: WebConcurrency::Fixed(NonZeroU32::new(7).unwrap()),
            python_env: true,
        };
        assert_eq!(
            value(
                &app_environment(&limited, fixed, &[], true),
                "WEB_CONCURRENCY"
            ),
            Some("7")
        );
        let off = AppEnvSettings {
            web_concurrency: WebConcurrency::Off,
            python_env: true,
        };
        let environment = app_environment(&limited, off, &[], true);
        assert_eq!(value(&environment, "WEB_CONCURRENCY"), None);
        assert_eq!(environment.chosen_workers, None);
        // A fixed count is not pyinit's choice either.
        assert_eq!(
            app_environment(&limited, fixed, &[], true).chosen_workers,
            None
        );
        assert_eq!(value(&environment, "PYINIT_CPU_LIMIT"), Some("1.5"));
        let no_python_env = AppEnvSettings {
            web_concurrency: WebConcurrency::Auto,
            python_env: false,
        };
        assert_eq!(
            app_environment(&limited, no_python_env, &[], true).describe(),
            "WEB_CONCURRENCY=4 PYINIT_CPU_LIMIT=1.5 PYINIT_MEMORY_LIMIT_BYTES=1073741824"
        );
    }

    #[test]
    fn web_concurrency_values() {
        assert_eq!(parse_web_concurrency("auto"), Ok(WebConcurrency::Auto));
        assert_eq!(parse_web_concurrency("off"), Ok(WebConcurrency::Off));
        assert_eq!(
            parse_web_concurrency("7"),
            Ok(WebConcurrency::Fixed(NonZeroU32::new(7).unwrap()))
        );
        for bad in ["0", "-1", "many", "", "1.5"] {
            assert!(parse_web_concurrency(bad).is_err(), "{bad:?}");
        }
    }
}
