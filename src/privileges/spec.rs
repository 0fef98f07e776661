//! What the privilege drop is asked to do, as configured: who pyinit and the app become, the
//! umask and the resource limits, with the parsers of the flags' values.
//!
//! Pure: names are only checked for shape here (each parser's message says what was expected;
//! clap puts the flag and the value in front of it). `passwd.rs` resolves them against
//! /etc/passwd and /etc/group, and `mod.rs` makes the calls. Resource limits are in `rlimit.rs`.

use std::fmt;

use super::rlimit::RlimitSpec;

/// The most supplementary groups Linux accepts (`NGROUPS_MAX`).
pub const MAX_GROUPS: usize = 65536;

/// What the drop is asked to do, checked for shape by `config`; the names are resolved later,
/// against the files, by `passwd.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivilegeConfig {
    pub user: Option<UserSpec>,
    /// `--group`: overrides the primary group from `user` or /etc/passwd.
    pub group: Option<IdOrName>,
    /// `--groups`: exactly these supplementary groups (empty clears them); `None` means the
    /// user's groups from /etc/group.
    pub groups: Option<Vec<IdOrName>>,
    pub umask: Option<Umask>,
    pub allow_root: bool,
    /// Set `PR_SET_NO_NEW_PRIVS` (unless `--allow-privilege-escalation`).
    pub no_new_privs: bool,
    /// At most one per resource.
    pub rlimits: Vec<RlimitSpec>,
}

/// The largest uid or gid: `(uid_t)-1` means "unchanged" to the set-id calls, so it is no id.
pub const MAX_ID: u32 = u32::MAX - 1;

/// A user or group as given on the command line: a number, or a name to look up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdOrName {
    Id(u32),
    Name(String),
}

impl fmt::Display for IdOrName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdOrName::Id(id) => write!(f, "{id}"),
            IdOrName::Name(name) => f.write_str(name),
        }
    }
}

/// `--user USER[:GROUP]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSpec {
    pub user: IdOrName,
    pub group: Option<IdOrName>,
}

/// `--groups G1,G2`: the exact supplementary groups; empty clears them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupList(pub Vec<IdOrName>);

/// `--umask`: the permission bits (0..=0o777) masked out of every file the app creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Umask(pub u32);

/// Parses a user or group: all digits is an id (0..=4294967294), anything else a name.
pub fn parse_id_or_name(text: &str) -> Result<IdOrName, String> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|byte| byte.is_ascii_digit()) {
        return match trimmed.parse::<u64>() {
            Ok(id) if id <= u64::from(MAX_ID) => u32::try_from(id)
                .map(IdOrName::Id)
                .map_err(|_| id_out_of_range()),
            _ => Err(id_out_of_range()),
        };
    }
    // The files separate fields by ':' and members by ','; a leading '-' is an option, not a name.
    let well_formed = !trimmed.is_empty()
        && !trimmed.starts_with('-')
        && !trimmed
            .chars()
            .any(|c| c == ':' || c == ',' || c == '/' || c.is_whitespace() || c.is_control());
    if well_formed {
        Ok(IdOrName::Name(trimmed.to_owned()))
    } else {
        Err("expected a name from /etc/passwd or /etc/group, or a numeric id".to_owned())
    }
}

fn id_out_of_range() -> String {
    format!("ids range from 0 to {MAX_ID}")
}

/// Parses `--user USER[:GROUP]`: `nobody`, `app:app`, `10001`, `10001:10001`.
pub fn parse_user_spec(text: &str) -> Result<UserSpec, String> {
    let (user, group) = match text.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (text, None),
    };
    let expected =
        |reason: String| format!("{reason} (expected USER[:GROUP], such as nobody or 10001:10001)");
    let user = parse_id_or_name(user).map_err(expected)?;
    let group = group.map(parse_id_or_name).transpose().map_err(expected)?;
    Ok(UserSpec { user, group })
}

/// Parses `--groups G1,G2`; an empty value is an empty list, which clears the groups.
pub fn parse_group_list(text: &str) -> Result<GroupList, String> {
    if text.trim().is_empty() {
        return Ok(GroupList(Vec::new()));
    }
    text.split(',')
        .map(parse_id_or_name)
        .collect::<Result<Vec<_>, _>>()
        .map(GroupList)
}

/// Parses an octal umask such as `0027`, `027` or `22`.
pub fn parse_umask(text: &str) -> Result<Umask, String> {
    let expected = || "expected an octal umask from 0000 to 0777, such as 0027".to_owned();
    let trimmed = text.trim();
    if trimmed.is_empty()
        || trimmed.len() > 4
        || !trimmed.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(expected());
    }
    match u32::from_str_radix(trimmed, 8) {
        Ok(bits) if bits <= 0o777 => Ok(Umask(bits)),
        _ => Err(expected()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        assert_eq!(
            parse_id_or_name("nobody"),
            Ok(IdOrName::Name("nobody".into()))
        );
        assert_eq!(
            parse_id_or_name("www-data"),
            Ok(IdOrName::Name("www-data".into()))
        );
        assert_eq!(parse_id_or_name("10001"), Ok(IdOrName::Id(10001)));
        assert_eq!(parse_id_or_name("0"), Ok(IdOrName::Id(0)));
        assert_eq!(
            parse_id_or_name("4294967294"),
            Ok(IdOrName::Id(4_294_967_294))
        );
        for text in ["4294967295", "99999999999999999999"] {
            let error = parse_id_or_name(text).unwrap_err();
            assert!(error.contains("4294967294"), "{text}: {error}");
        }
        for text in ["", " ", "-1", "a:b", "a,b", "a b", "../x", "-x"] {
            assert!(
                parse_id_or_name(text).is_err(),
                "{text:?} should be rejected"
            );
        }
    }

    #[test]
    fn user_specs() {
        let name = |text: &str| IdOrName::Name(text.to_owned());
        let cases = [
            ("nobody", name("nobody"), None),
            ("app:staff", name("app"), Some(name("staff"))),
            ("10001", IdOrName::Id(10001), None),
            (
                "10001:10002",
                IdOrName::Id(10001),
                Some(IdOrName::Id(10002)),
            ),
            ("app:100", name("app"), Some(IdOrName::Id(100))),
        ];
        for (text, user, group) in cases {
            assert_eq!(
                parse_user_spec(text),
                Ok(UserSpec { user, group }),
                "{text}"
            );
        }
        for text in [
            "",
            ":",
            ":staff",
            "app:",
            "app:staff:x",
            "4294967295",
            "1:4294967295",
        ] {
            let error = parse_user_spec(text).unwrap_err();
            assert!(error.contains("USER[:GROUP]"), "{text}: {error}");
        }
    }

    #[test]
    fn group_lists() {
        assert_eq!(parse_group_list(""), Ok(GroupList(Vec::new())));
        assert_eq!(
            parse_group_list("users, 27"),
            Ok(GroupList(vec![
                IdOrName::Name("users".into()),
                IdOrName::Id(27)
            ]))
        );
        for text in ["users,,staff", "users,", "a b"] {
            assert!(
                parse_group_list(text).is_err(),
                "{text:?} should be rejected"
            );
        }
    }

    #[test]
    fn umasks() {
        for (text, bits) in [
            ("0027", 0o027),
            ("027", 0o027),
            ("22", 0o022),
            ("0", 0),
            ("0777", 0o777),
        ] {
            assert_eq!(parse_umask(text), Ok(Umask(bits)), "{text}");
        }
        for text in [
            "", "0888", "1000", "01000", "00000", "abc", "-022", "0o22", "u=rwx",
        ] {
            assert!(parse_umask(text).is_err(), "{text:?} should be rejected");
        }
    }
}
