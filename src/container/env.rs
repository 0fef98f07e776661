//! The environment the app gets from the container's facts and pyinit's defaults:
//! `WEB_CONCURRENCY`, `PYTHON_CPU_COUNT`, `PYINIT_CPU_LIMIT`, `PYINIT_MEMORY_LIMIT_BYTES`,
//! `PYTHONUNBUFFERED` and `PYTHONFAULTHANDLER`, and the variables of the server's profile (its
//! worker count, what makes its stop graceful), each only when pyinit's own environment does not
//! already have it, so an app's own setting always wins (an empty `PYTHONFAULTHANDLER` is how an
//! app turns faulthandler off, and it is kept like any other value).
//!
//! Pure: the facts, the settings from the flags and pyinit's current environment are parameters;
//! `main` puts the result on the app's `SpawnSpec`, never into pyinit's own environment.

use std::ffi::OsString;
use std::num::NonZeroU32;

use super::facts::ContainerFacts;
use crate::server::recognise::sets_worker_count;
use crate::server::{ServerProfile, WorkersPerCpu, is_false_value};

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

/// What the flags and the server's profile say about the app's environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppEnvSettings {
    /// `WEB_CONCURRENCY`, and the server's own worker-count variable.
    pub web_concurrency: WebConcurrency,
    /// `--python-env on`: set `PYTHONUNBUFFERED`, `PYTHONFAULTHANDLER` and `PYTHON_CPU_COUNT`.
    pub python_env: bool,
    /// The server's profile, whose variables the app gets too.
    pub server: Option<&'static ServerProfile>,
    /// False when the command configures the server's stop itself: the profile's variables
    /// for a graceful stop are left out.
    pub graceful_stop_variables: bool,
}

impl Default for AppEnvSettings {
    fn default() -> Self {
        AppEnvSettings {
            web_concurrency: WebConcurrency::Auto,
            python_env: true,
            server: None,
            graceful_stop_variables: true,
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
    /// `off`, the app's own value, or a count the app's environment gives the server another way
    /// (`UVICORN_WORKERS`, `-w` in `GUNICORN_CMD_ARGS`).
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
    environment.chosen_workers = chosen_workers(facts, settings, current_env);
    let mut offer = |name: &'static str, value: Option<String>| {
        let Some(value) = value else { return };
        if current_env.iter().any(|(key, _)| key == name) {
            environment.kept.push(name);
        } else {
            environment.set.push((name, value));
        }
    };
    let millicpus = facts.effective_millicpus();
    let workers = |per_cpu: WorkersPerCpu| match settings.web_concurrency {
        WebConcurrency::Auto => millicpus.map(|millicpus| match per_cpu {
            WorkersPerCpu::TwicePlusOne => web_concurrency_for(millicpus),
            WorkersPerCpu::One => python_cpu_count_for(millicpus),
        }),
        WebConcurrency::Off => None,
        WebConcurrency::Fixed(workers) => Some(u64::from(workers.get())),
    };
    offer(
        "WEB_CONCURRENCY",
        workers(WorkersPerCpu::TwicePlusOne).map(|n| n.to_string()),
    );
    if let Some(profile) = settings.server {
        for (name, value) in server_variables(profile, settings, current_env, workers) {
            offer(name, value);
        }
    }
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

/// The `WEB_CONCURRENCY` pyinit chooses from the CPUs and the server runs: with
/// `--web-concurrency auto`, when the app's environment sets no count of its own.
fn chosen_workers(
    facts: &ContainerFacts,
    settings: AppEnvSettings,
    current_env: &[(OsString, OsString)],
) -> Option<u32> {
    let apps_own_web_concurrency = current_env.iter().any(|(key, _)| key == "WEB_CONCURRENCY");
    let server_count_set =
        (settings.server).is_some_and(|profile| sets_server_worker_count(profile, current_env));
    if settings.web_concurrency != WebConcurrency::Auto
        || apps_own_web_concurrency
        || server_count_set
    {
        return None;
    }
    (facts.effective_millicpus())
        .and_then(|millicpus| u32::try_from(web_concurrency_for(millicpus)).ok())
}

/// Whether the app's environment sets the server's worker count in a way the server reads over
/// `WEB_CONCURRENCY`: one of its own count variables, or `-w`/`--workers` in the variable it
/// reads as more of its command line (split on blanks, as its shell-like split would for these).
fn sets_server_worker_count(profile: &ServerProfile, current_env: &[(OsString, OsString)]) -> bool {
    current_env.iter().any(|(name, value)| {
        profile
            .worker_count_variables
            .iter()
            .any(|own| name == *own)
            || (profile
                .arguments_variable
                .is_some_and(|arguments| name == arguments)
                && value
                    .to_str()
                    .is_some_and(|words| sets_worker_count(words.split_whitespace())))
    })
}

/// The profile's variables: its worker count (unless the app sets the same setting under
/// another name), then what makes its stop graceful, unless the app configures the stop itself
/// or turns one of those settings off (uWSGI's `UWSGI_MASTER=0`).
fn server_variables(
    profile: &ServerProfile,
    settings: AppEnvSettings,
    current_env: &[(OsString, OsString)],
    workers: impl Fn(WorkersPerCpu) -> Option<u64>,
) -> Vec<(&'static str, Option<String>)> {
    let value_of = |name: &str| {
        (current_env.iter())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.to_string_lossy())
    };
    let mut variables = Vec::new();
    if let Some(variable) = &profile.worker_variable
        && !variable
            .aliases
            .iter()
            .any(|alias| value_of(alias).is_some())
    {
        let count = workers(variable.per_cpu).map(|n| n.to_string());
        variables.push((variable.name, count));
    }
    let stop_set_by_app = (profile.stop_set_by_variables.iter())
        .any(|name| value_of(name).is_some())
        || (profile.graceful_stop_variables.iter())
            .any(|(name, _)| value_of(name).is_some_and(|value| is_false_value(&value)));
    if settings.graceful_stop_variables && !stop_set_by_app {
        for (name, value) in profile.graceful_stop_variables {
            variables.push((name, Some((*value).to_owned())));
        }
    }
    variables
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
            ..AppEnvSettings::default()
        };
        let environment = app_environment(&facts(None, None, 2), settings, &current_env, true);
        assert_eq!(value(&environment, "WEB_CONCURRENCY"), None);
    }

    #[test]
    fn flags_override_or_turn_off() {
        let limited = facts(Some((150000, 100000)), Some(1 << 30), 8);
        let fixed = AppEnvSettings {
            web_concurrency: WebConcurrency::Fixed(NonZeroU32::new(7).unwrap()),
            ..AppEnvSettings::default()
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
            ..AppEnvSettings::default()
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
            python_env: false,
            ..AppEnvSettings::default()
        };
        assert_eq!(
            app_environment(&limited, no_python_env, &[], true).describe(),
            "WEB_CONCURRENCY=4 PYINIT_CPU_LIMIT=1.5 PYINIT_MEMORY_LIMIT_BYTES=1073741824"
        );
    }

    fn with_server(name: &str) -> AppEnvSettings {
        let profile = crate::server::PROFILES.iter().find(|p| p.name == name);
        AppEnvSettings {
            server: Some(profile.unwrap()),
            ..AppEnvSettings::default()
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        (pairs.iter())
            .map(|(name, value)| (OsString::from(name), OsString::from(value)))
            .collect()
    }

    #[test]
    fn a_server_gets_its_own_worker_count_from_the_cpu_limit() {
        let limited = facts(Some((150000, 100000)), None, 8);
        // granian: one worker per CPU, rounded up; WEB_CONCURRENCY stays as for every app.
        let granian = app_environment(&limited, with_server("granian"), &[], true);
        assert_eq!(value(&granian, "GRANIAN_WORKERS"), Some("2"));
        assert_eq!(value(&granian, "WEB_CONCURRENCY"), Some("4"));
        let uwsgi = app_environment(&limited, with_server("uwsgi"), &[], true);
        assert_eq!(value(&uwsgi, "UWSGI_PROCESSES"), Some("4"));
        // An explicit --web-concurrency sizes the server's variable too; off sets none.
        let fixed = AppEnvSettings {
            web_concurrency: WebConcurrency::Fixed(NonZeroU32::new(3).unwrap()),
            ..with_server("granian")
        };
        let environment = app_environment(&limited, fixed, &[], true);
        assert_eq!(value(&environment, "GRANIAN_WORKERS"), Some("3"));
        let off = AppEnvSettings {
            web_concurrency: WebConcurrency::Off,
            ..with_server("granian")
        };
        let environment = app_environment(&limited, off, &[], true);
        assert_eq!(value(&environment, "GRANIAN_WORKERS"), None);
        // The app's own value wins, under the variable's name or an alias of it.
        let environment = app_environment(
            &limited,
            with_server("granian"),
            &env(&[("GRANIAN_WORKERS", "1")]),
            true,
        );
        assert_eq!(value(&environment, "GRANIAN_WORKERS"), None);
        assert!(environment.kept.contains(&"GRANIAN_WORKERS"));
        let environment = app_environment(
            &limited,
            with_server("uwsgi"),
            &env(&[("UWSGI_WORKERS", "2")]),
            true,
        );
        assert_eq!(value(&environment, "UWSGI_PROCESSES"), None);
        // Servers without such a variable get WEB_CONCURRENCY alone, as every app does.
        let celery = app_environment(&limited, with_server("celery"), &[], true);
        assert_eq!(
            celery.describe(),
            "WEB_CONCURRENCY=4 PYTHON_CPU_COUNT=2 PYINIT_CPU_LIMIT=1.5 PYTHONUNBUFFERED=1 \
             PYTHONFAULTHANDLER=1"
        );
    }

    #[test]
    fn a_worker_count_the_environment_sets_another_way_is_not_pyinits_to_follow() {
        let limited = facts(Some((150000, 100000)), None, 8);
        let chosen = |server: &str, pairs: &[(&str, &str)]| {
            app_environment(&limited, with_server(server), &env(pairs), true).chosen_workers
        };
        assert_eq!(chosen("gunicorn", &[]), Some(4));
        assert_eq!(chosen("uvicorn", &[]), Some(4));
        // gunicorn reads GUNICORN_CMD_ARGS as more of its command line, over WEB_CONCURRENCY.
        for args in ["-w 2", "--workers=2", "--bind :8000 -w2", "--workers 2"] {
            assert_eq!(
                chosen("gunicorn", &[("GUNICORN_CMD_ARGS", args)]),
                None,
                "{args}"
            );
        }
        let bind_only = [("GUNICORN_CMD_ARGS", "--bind :8000 --timeout 30")];
        assert_eq!(chosen("gunicorn", &bind_only), Some(4));
        // uvicorn's click reads UVICORN_WORKERS for --workers, over WEB_CONCURRENCY.
        assert_eq!(chosen("uvicorn", &[("UVICORN_WORKERS", "2")]), None);
        // Another server's variable changes nothing.
        assert_eq!(chosen("gunicorn", &[("UVICORN_WORKERS", "2")]), Some(4));
    }

    #[test]
    fn uwsgi_gets_its_master_and_the_graceful_hook_unless_the_app_configured_its_stop() {
        let limited = facts(Some((100000, 100000)), None, 8);
        let hook = "unix_signal:15 gracefully_kill_them_all";
        let environment = app_environment(&limited, with_server("uwsgi"), &[], true);
        assert_eq!(value(&environment, "UWSGI_MASTER"), Some("1"));
        assert_eq!(value(&environment, "UWSGI_HOOK_MASTER_START"), Some(hook));
        // The app's master on: kept, and the hook still comes.
        let environment = app_environment(
            &limited,
            with_server("uwsgi"),
            &env(&[("UWSGI_MASTER", "true")]),
            true,
        );
        assert_eq!(value(&environment, "UWSGI_MASTER"), None);
        assert_eq!(value(&environment, "UWSGI_HOOK_MASTER_START"), Some(hook));
        for app_env in [
            [(
                "UWSGI_HOOK_MASTER_START",
                "unix_signal:1 gracefully_kill_them_all",
            )],
            [("UWSGI_DIE_ON_TERM", "1")],
            [("UWSGI_MASTER", "0")],
            [("UWSGI_MASTER", "false")],
        ] {
            let environment = app_environment(&limited, with_server("uwsgi"), &env(&app_env), true);
            assert_eq!(value(&environment, "UWSGI_MASTER"), None, "{app_env:?}");
            assert_eq!(
                value(&environment, "UWSGI_HOOK_MASTER_START"),
                None,
                "{app_env:?}"
            );
            // The worker count is another matter.
            assert_eq!(
                value(&environment, "UWSGI_PROCESSES"),
                Some("3"),
                "{app_env:?}"
            );
        }
        // The command configures the stop: no variables for it either.
        let settings = AppEnvSettings {
            graceful_stop_variables: false,
            ..with_server("uwsgi")
        };
        let environment = app_environment(&limited, settings, &[], true);
        assert_eq!(value(&environment, "UWSGI_HOOK_MASTER_START"), None);
        assert_eq!(value(&environment, "UWSGI_MASTER"), None);
        // A health sidecar has no server to set anything for.
        let environment = app_environment(&limited, with_server("uwsgi"), &[], false);
        assert_eq!(environment, AppEnvironment::default());
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
