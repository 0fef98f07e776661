//! Resource limits: the one table of the limits pyinit can set, and `--rlimit NAME=SOFT[:HARD]`.
//!
//! Each row of [`RLIMITS`] pairs the name that `ulimit` and `docker --ulimit` use with the
//! kernel's resource; the parser, the messages and the setrlimit calls in `mod.rs` all read it.
//! No I/O here: nix's `Resource` and `RLIM_INFINITY` only name the kernel's numbers.
//!
//! One limit has a default of pyinit's: without `--rlimit core=...`, the soft core-file limit is
//! 0 ([`default_core_limit`]), whatever pyinit inherited; the hard limit stays as inherited.

use std::fmt;

use nix::sys::resource::{RLIM_INFINITY, Resource, rlim_t};

/// Every resource limit pyinit can set, by the name it is given on the command line.
const RLIMITS: [(&str, Resource); 16] = [
    ("as", Resource::RLIMIT_AS),
    ("core", Resource::RLIMIT_CORE),
    ("cpu", Resource::RLIMIT_CPU),
    ("data", Resource::RLIMIT_DATA),
    ("fsize", Resource::RLIMIT_FSIZE),
    ("locks", Resource::RLIMIT_LOCKS),
    ("memlock", Resource::RLIMIT_MEMLOCK),
    ("msgqueue", Resource::RLIMIT_MSGQUEUE),
    ("nice", Resource::RLIMIT_NICE),
    ("nofile", Resource::RLIMIT_NOFILE),
    ("nproc", Resource::RLIMIT_NPROC),
    ("rss", Resource::RLIMIT_RSS),
    ("rtprio", Resource::RLIMIT_RTPRIO),
    ("rttime", Resource::RLIMIT_RTTIME),
    ("sigpending", Resource::RLIMIT_SIGPENDING),
    ("stack", Resource::RLIMIT_STACK),
];

/// One side of a limit: a number (bytes, seconds or a count, as the resource counts) or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RlimitValue {
    Limited(u64),
    Unlimited,
}

impl RlimitValue {
    /// The value as setrlimit(2) takes it.
    pub fn raw(self) -> rlim_t {
        match self {
            RlimitValue::Limited(limit) => limit,
            RlimitValue::Unlimited => RLIM_INFINITY,
        }
    }
}

impl fmt::Display for RlimitValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RlimitValue::Limited(limit) => write!(f, "{limit}"),
            RlimitValue::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// `--rlimit NAME=SOFT[:HARD]`; a lone SOFT sets the hard limit to the same value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RlimitSpec {
    pub resource: Resource,
    pub soft: RlimitValue,
    pub hard: RlimitValue,
}

impl RlimitSpec {
    /// The resource's name, as the flag spells it: `nofile`.
    pub fn name(&self) -> &'static str {
        RLIMITS
            .iter()
            .find(|(_, resource)| *resource == self.resource)
            .map_or("?", |(name, _)| name)
    }
}

/// `nofile=1024:2048`, as the flag spells it.
impl fmt::Display for RlimitSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}:{}", self.name(), self.soft, self.hard)
    }
}

/// Parses `nofile=1024:2048`, `core=0`, `memlock=unlimited`.
pub fn parse_rlimit(text: &str) -> Result<RlimitSpec, String> {
    let expected = || "expected NAME=SOFT[:HARD], such as nofile=1024:4096 or core=0".to_owned();
    let (name, limits) = text.split_once('=').ok_or_else(expected)?;
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_prefix("rlimit_").unwrap_or(&name);
    let resource = RLIMITS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, resource)| *resource)
        .ok_or_else(|| {
            let names: Vec<_> = RLIMITS.iter().map(|(known, _)| *known).collect();
            format!(
                "'{name}' is not a resource limit (one of {})",
                names.join(", ")
            )
        })?;
    let (soft, hard) = match limits.split_once(':') {
        Some((soft, hard)) => (soft, Some(hard)),
        None => (limits, None),
    };
    let soft = parse_rlimit_value(soft).ok_or_else(expected)?;
    let hard = match hard {
        Some(hard) => parse_rlimit_value(hard).ok_or_else(expected)?,
        None => soft,
    };
    if soft > hard {
        return Err("the soft limit must not exceed the hard limit".to_owned());
    }
    Ok(RlimitSpec {
        resource,
        soft,
        hard,
    })
}

/// The core-file limit pyinit sets when `--rlimit core=...` is not given, from the inherited hard
/// limit: soft 0, hard unchanged. The dump signal at the drain deadline (SIGBUS by default) is
/// one whose default action dumps core, and Python's faulthandler re-raises it after printing:
/// every process of the app would otherwise write a core file at each missed deadline, where
/// the node's core_pattern says (often the host's crash collector, or the app's working
/// directory). A soft limit of 0 stops that even for a limit inherited from the runtime (`docker
/// --ulimit core=...`); the hard limit stays, so an app that wants its core files may raise its
/// own soft limit again, and `--rlimit core=...` sets both and wins. `None`: the flag sets it.
pub fn default_core_limit(rlimits: &[RlimitSpec], inherited_hard: rlim_t) -> Option<RlimitSpec> {
    if rlimits
        .iter()
        .any(|spec| spec.resource == Resource::RLIMIT_CORE)
    {
        return None;
    }
    let hard = if inherited_hard == RLIM_INFINITY {
        RlimitValue::Unlimited
    } else {
        RlimitValue::Limited(inherited_hard)
    };
    Some(RlimitSpec {
        resource: Resource::RLIMIT_CORE,
        soft: RlimitValue::Limited(0),
        hard,
    })
}

fn parse_rlimit_value(text: &str) -> Option<RlimitValue> {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("unlimited") || trimmed == "-1" {
        return Some(RlimitValue::Unlimited);
    }
    // u64::MAX is RLIM_INFINITY on Linux: a number that large means unlimited, so it is refused.
    match trimmed.parse::<u64>() {
        Ok(value) if value < u64::MAX => Some(RlimitValue::Limited(value)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rlimits() {
        use RlimitValue::{Limited, Unlimited};
        let cases = [
            (
                "nofile=1024:2048",
                Resource::RLIMIT_NOFILE,
                Limited(1024),
                Limited(2048),
            ),
            ("core=0", Resource::RLIMIT_CORE, Limited(0), Limited(0)),
            (
                "NPROC=100:unlimited",
                Resource::RLIMIT_NPROC,
                Limited(100),
                Unlimited,
            ),
            (
                "memlock=unlimited",
                Resource::RLIMIT_MEMLOCK,
                Unlimited,
                Unlimited,
            ),
            ("RLIMIT_AS=-1", Resource::RLIMIT_AS, Unlimited, Unlimited),
            (
                "stack=8388608",
                Resource::RLIMIT_STACK,
                Limited(8_388_608),
                Limited(8_388_608),
            ),
        ];
        for (text, resource, soft, hard) in cases {
            assert_eq!(
                parse_rlimit(text),
                Ok(RlimitSpec {
                    resource,
                    soft,
                    hard
                }),
                "{text}"
            );
        }
        let error = parse_rlimit("nofiles=1").unwrap_err();
        assert!(
            error.contains("'nofiles'") && error.contains("nofile,"),
            "{error}"
        );
        let error = parse_rlimit("nofile=2048:1024").unwrap_err();
        assert!(error.contains("soft limit"), "{error}");
        let error = parse_rlimit("nofile=unlimited:1024").unwrap_err();
        assert!(error.contains("soft limit"), "{error}");
        for text in [
            "nofile",
            "nofile=",
            "nofile=abc",
            "nofile=1:2:3",
            "nofile=18446744073709551615",
        ] {
            assert!(parse_rlimit(text).is_err(), "{text:?} should be rejected");
        }
    }

    #[test]
    fn every_row_names_its_own_resource() {
        for (index, (name, resource)) in RLIMITS.iter().enumerate() {
            let spec = parse_rlimit(&format!("{name}=1")).unwrap();
            assert_eq!(spec.resource, *resource, "{name}");
            assert_eq!(spec.name(), *name);
            let repeated = RLIMITS[..index]
                .iter()
                .any(|(other_name, other)| other_name == name || other == resource);
            assert!(!repeated, "{name} is in the table twice");
        }
    }

    #[test]
    fn core_dumps_are_off_unless_the_flag_sets_them() {
        let none = default_core_limit(&[], RLIM_INFINITY).unwrap();
        assert_eq!(none.to_string(), "core=0:unlimited");
        let inherited = default_core_limit(&[parse_rlimit("nofile=1024").unwrap()], 4096).unwrap();
        assert_eq!(inherited.to_string(), "core=0:4096");
        // `--rlimit core=...` wins, whatever it says.
        for text in ["core=unlimited", "core=0:0", "core=1048576:unlimited"] {
            assert_eq!(
                default_core_limit(&[parse_rlimit(text).unwrap()], RLIM_INFINITY),
                None,
                "{text}"
            );
        }
    }

    #[test]
    fn limits_as_the_kernel_and_the_flag_write_them() {
        assert_eq!(RlimitValue::Unlimited.raw(), RLIM_INFINITY);
        assert_eq!(RlimitValue::Limited(7).raw(), 7);
        let spec = parse_rlimit("nofile=1024").unwrap();
        assert_eq!(spec.to_string(), "nofile=1024:1024");
        let spec = parse_rlimit("core=0:unlimited").unwrap();
        assert_eq!(spec.to_string(), "core=0:unlimited");
    }
}
