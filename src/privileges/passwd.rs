//! The pure half of the privilege drop: parsers of /etc/passwd and /etc/group text, and the
//! resolution of the privilege flags into the ids pyinit must reach.
//!
//! File contents and the ids pyinit runs with are parameters, so tests pass strings, and the
//! errors are this file's own ([`ResolveError`], all exit 2); reading the files, the set-id calls
//! and the verification belong to `privileges/mod.rs`. pyinit reads the
//! files itself instead of calling getpwnam, so that a static binary resolves names on a
//! distroless or scratch image, where no NSS modules exist. A missing file reads as empty: a
//! numeric `--user` then still works, as Kubernetes' arbitrary `runAsUser` needs.

use std::fmt;

use super::spec::{IdOrName, PrivilegeConfig};

/// Where user names are resolved.
pub const PASSWD_PATH: &str = "/etc/passwd";
/// Where group names are resolved.
pub const GROUP_PATH: &str = "/etc/group";

/// Why the privilege flags cannot be resolved: something the user asked wrongly (exit 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// A user or group name that the file does not list.
    UnknownName {
        flag: &'static str,
        value: String,
        file: &'static str,
    },
    /// The app would run as root and `--allow-root` was not given.
    RootRefused,
    /// pyinit is not root and was asked to become other ids.
    NotRoot { current_uid: u32, target: String },
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::UnknownName { flag, value, file } => {
                write!(
                    f,
                    "invalid value '{value}' for '{flag}': no such name in {file}"
                )
            }
            ResolveError::RootRefused => f.write_str(
                "refusing to run as root: pass --user (for example --user nobody) or run \
                 the pod with securityContext.runAsUser; --allow-root permits root",
            ),
            ResolveError::NotRoot {
                current_uid,
                target,
            } => write!(
                f,
                "cannot become {target}: pyinit runs as uid {current_uid}, not root; remove \
                 --user, --group and --groups or start pyinit as root"
            ),
        }
    }
}

/// One line of /etc/passwd: `name:password:uid:gid:gecos:home:shell`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswdEntry<'a> {
    pub name: &'a str,
    pub uid: u32,
    pub gid: u32,
    pub home: &'a str,
}

/// One line of /etc/group: `name:password:gid:member,member`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEntry<'a> {
    pub name: &'a str,
    pub gid: u32,
    pub members: Vec<&'a str>,
}

/// The lines of a passwd file that parse; comments, NIS `+`/`-` lines and malformed lines are
/// skipped, as the C library skips them.
pub fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    records(text).filter_map(|fields| {
        let mut fields = fields.into_iter();
        let name = fields.next()?;
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        let _gecos = fields.next();
        let home = fields.next().unwrap_or("");
        Some(PasswdEntry {
            name,
            uid,
            gid,
            home,
        })
    })
}

/// The lines of a group file that parse, skipped as in [`passwd_entries`].
pub fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    records(text).filter_map(|fields| {
        let mut fields = fields.into_iter();
        let name = fields.next()?;
        let _password = fields.next()?;
        let gid = fields.next()?.parse().ok()?;
        let members = fields
            .next()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|member| !member.is_empty())
            .collect();
        Some(GroupEntry { name, gid, members })
    })
}

fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| {
            !line.trim().is_empty()
                && !line.starts_with('#')
                && !line.starts_with('+')
                && !line.starts_with('-')
        })
        .map(|line| line.split(':').collect::<Vec<_>>())
        .filter(|fields| fields.first().is_some_and(|name| !name.is_empty()))
}

/// The ids pyinit runs with before the drop (effective ids; `privileges` reads them from /proc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentIds {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// HOME, USER and LOGNAME for the app, as login tools set them for the target user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    /// The passwd name, or the decimal uid of a user that has no passwd entry.
    pub user: String,
    /// The passwd home directory, or `/` when there is none.
    pub home: String,
}

impl Login {
    pub fn env(&self) -> [(&'static str, &str); 3] {
        [
            ("HOME", self.home.as_str()),
            ("USER", self.user.as_str()),
            ("LOGNAME", self.user.as_str()),
        ]
    }
}

/// What the drop must reach, resolved from the flags and the two files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, sorted and without duplicates.
    pub groups: Vec<u32>,
    /// pyinit is root and was asked for a user or groups: the set-id calls must run. When false,
    /// pyinit already runs as the target and changes no id.
    pub change_ids: bool,
    /// Set when `--user` was given.
    pub login: Option<Login>,
}

/// Resolves the privilege flags against /etc/passwd and /etc/group (their contents), checks the
/// root rule and what a non-root pyinit can do, and returns the ids to reach.
///
/// Without `--user` the user is the current one. The primary group comes from `--group`, else
/// from `--user USER:GROUP`, else from the passwd entry, else it is the uid's own number. The
/// supplementary groups default to what initgroups(3) gives: every group that lists the user,
/// plus the primary group.
pub fn resolve_target(
    config: &PrivilegeConfig,
    current: &CurrentIds,
    passwd_text: &str,
    group_text: &str,
) -> Result<Target, ResolveError> {
    let asked = config.user.is_some() || config.group.is_some() || config.groups.is_some();
    let find_uid = |uid: u32| passwd_entries(passwd_text).find(|entry| entry.uid == uid);
    let (uid, entry) = match config.user.as_ref().map(|spec| &spec.user) {
        Some(IdOrName::Name(name)) => {
            let entry = passwd_entries(passwd_text)
                .find(|entry| entry.name == name)
                .ok_or_else(|| ResolveError::UnknownName {
                    flag: "--user",
                    value: name.clone(),
                    file: PASSWD_PATH,
                })?;
            (entry.uid, Some(entry))
        }
        Some(IdOrName::Id(uid)) => (*uid, find_uid(*uid)),
        None => (current.uid, find_uid(current.uid)),
    };
    let group_of_user = config.user.as_ref().and_then(|spec| spec.group.as_ref());
    let gid = match (&config.group, group_of_user) {
        (Some(group), _) => resolve_group(group, "--group", group_text)?,
        (None, Some(group)) => resolve_group(group, "--user", group_text)?,
        (None, None) if config.user.is_some() => entry.as_ref().map_or(uid, |entry| entry.gid),
        (None, None) => current.gid,
    };
    let mut groups = match &config.groups {
        Some(list) => list
            .iter()
            .map(|group| resolve_group(group, "--groups", group_text))
            .collect::<Result<Vec<_>, _>>()?,
        None if asked => {
            let name = entry.as_ref().map(|entry| entry.name);
            let member_of = group_entries(group_text)
                .filter(|group| name.is_some_and(|name| group.members.contains(&name)))
                .map(|group| group.gid);
            std::iter::once(gid).chain(member_of).collect()
        }
        None => current.groups.clone(),
    };
    groups.sort_unstable();
    groups.dedup();

    if uid == 0 && !config.allow_root {
        return Err(ResolveError::RootRefused);
    }
    let login = config.user.as_ref().map(|_| Login {
        user: entry
            .as_ref()
            .map_or_else(|| uid.to_string(), |entry| entry.name.to_owned()),
        home: entry
            .as_ref()
            .map(|entry| entry.home)
            .filter(|home| !home.is_empty())
            .unwrap_or("/")
            .to_owned(),
    });
    if current.uid != 0 && asked {
        // Without root only a no-op "drop" is possible: the ids must already be the target.
        let mut current_groups = current.groups.clone();
        current_groups.sort_unstable();
        current_groups.dedup();
        let groups_differ = config.groups.is_some() && groups != current_groups;
        if uid != current.uid || gid != current.gid || groups_differ {
            return Err(ResolveError::NotRoot {
                current_uid: current.uid,
                target: describe_ids(uid, gid, config.groups.as_ref().map(|_| &groups[..])),
            });
        }
        return Ok(Target {
            uid,
            gid,
            groups: current_groups,
            change_ids: false,
            login,
        });
    }
    Ok(Target {
        uid,
        gid,
        groups,
        change_ids: asked,
        login,
    })
}

fn resolve_group(
    group: &IdOrName,
    flag: &'static str,
    group_text: &str,
) -> Result<u32, ResolveError> {
    match group {
        IdOrName::Id(gid) => Ok(*gid),
        IdOrName::Name(name) => group_entries(group_text)
            .find(|entry| entry.name == name)
            .map(|entry| entry.gid)
            .ok_or_else(|| ResolveError::UnknownName {
                flag,
                value: name.clone(),
                file: GROUP_PATH,
            }),
    }
}

fn describe_ids(uid: u32, gid: u32, groups: Option<&[u32]>) -> String {
    match groups {
        Some(groups) => {
            let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
            format!("uid {uid} gid {gid} groups [{}]", groups.join(","))
        }
        None => format!("uid {uid} gid {gid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Environment;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
# a comment, then a blank line and a NIS line

+@netgroup::::::
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
app:x:10001:10001:The App,,,:/srv/app:/bin/sh
short:x:10002:10002
broken:x:notanumber:1:::
nohome:x:10003:10003:::/bin/sh
";

    const GROUP: &str = "\
root:x:0:
users:x:100:app,nobody
nogroup:x:65534:
app:x:10001:
staff:x:50: app , other
www:x:33:other
dup:x:34:app
dup:x:35:
";

    fn privileges(args: &[&str]) -> PrivilegeConfig {
        let args: Vec<&str> = args.iter().copied().chain(["app"]).collect();
        crate::config::parse_args(&args, Environment::default())
            .unwrap()
            .privileges
    }

    fn root() -> CurrentIds {
        CurrentIds {
            uid: 0,
            gid: 0,
            groups: vec![0],
        }
    }

    fn resolve(args: &[&str]) -> Result<Target, ResolveError> {
        resolve_target(&privileges(args), &root(), PASSWD, GROUP)
    }

    #[test]
    fn passwd_lines_parse_and_bad_ones_are_skipped() {
        let entries: Vec<_> = passwd_entries(PASSWD).collect();
        let names: Vec<_> = entries.iter().map(|entry| entry.name).collect();
        assert_eq!(names, ["root", "nobody", "app", "short", "nohome"]);
        assert_eq!(
            entries[2],
            PasswdEntry {
                name: "app",
                uid: 10001,
                gid: 10001,
                home: "/srv/app"
            }
        );
        assert_eq!(entries[3].home, "");
        assert_eq!(passwd_entries("").count(), 0);
        assert_eq!(
            passwd_entries("a:x:1:1:g:/h:/s\r\n").next().unwrap().home,
            "/h"
        );
    }

    #[test]
    fn group_lines_parse_with_their_members() {
        let entries: Vec<_> = group_entries(GROUP).collect();
        assert_eq!(entries.len(), 8);
        assert_eq!(entries[1].members, ["app", "nobody"]);
        assert_eq!(entries[4].members, ["app", "other"]);
        assert!(entries[0].members.is_empty());
        assert_eq!(group_entries("g:x:7").next().unwrap().gid, 7);
    }

    #[test]
    fn a_named_user_gets_its_passwd_group_home_and_initgroups() {
        let target = resolve(&["--user", "app"]).unwrap();
        assert_eq!((target.uid, target.gid), (10001, 10001));
        // users (100), staff (50) and the first dup (34) list app; the primary group is added.
        assert_eq!(target.groups, [34, 50, 100, 10001]);
        assert!(target.change_ids);
        let login = target.login.unwrap();
        assert_eq!(
            login.env(),
            [("HOME", "/srv/app"), ("USER", "app"), ("LOGNAME", "app")]
        );
    }

    #[test]
    fn nobody_gets_its_groups() {
        let target = resolve(&["--user", "nobody"]).unwrap();
        assert_eq!((target.uid, target.gid), (65534, 65534));
        assert_eq!(target.groups, [100, 65534]);
        assert_eq!(target.login.unwrap().home, "/nonexistent");
    }

    #[test]
    fn a_numeric_uid_without_an_entry_works_with_home_slash() {
        let target = resolve(&["--user", "20000"]).unwrap();
        assert_eq!((target.uid, target.gid), (20000, 20000));
        assert_eq!(target.groups, [20000]);
        let login = target.login.unwrap();
        assert_eq!(
            login.env(),
            [("HOME", "/"), ("USER", "20000"), ("LOGNAME", "20000")]
        );
        let target = resolve(&["--user", "20000:20001"]).unwrap();
        assert_eq!((target.uid, target.gid), (20000, 20001));
        assert_eq!(target.groups, [20001]);
        // A numeric uid with an entry is that user.
        let target = resolve(&["--user", "10001"]).unwrap();
        assert_eq!(target.login.unwrap().user, "app");
        assert_eq!(target.groups, [34, 50, 100, 10001]);
    }

    #[test]
    fn entries_without_a_home_get_slash() {
        assert_eq!(
            resolve(&["--user", "short"]).unwrap().login.unwrap().home,
            "/"
        );
        assert_eq!(
            resolve(&["--user", "nohome"]).unwrap().login.unwrap().home,
            "/"
        );
    }

    #[test]
    fn group_flags_override_in_order() {
        let target = resolve(&["--user", "app:users"]).unwrap();
        assert_eq!(target.gid, 100);
        assert_eq!(target.groups, [34, 50, 100]);
        let target = resolve(&["--user", "app:users", "--group", "www"]).unwrap();
        assert_eq!(target.gid, 33);
        let target = resolve(&["--user", "app", "--groups", "www,7,www"]).unwrap();
        assert_eq!(target.gid, 10001);
        assert_eq!(target.groups, [7, 33]);
        let target = resolve(&["--user", "app", "--groups", ""]).unwrap();
        assert!(target.groups.is_empty());
    }

    #[test]
    fn unknown_names_name_the_flag_the_value_and_the_file() {
        for (args, expected) in [
            (
                &["--user", "ghost"][..],
                "invalid value 'ghost' for '--user': no such name in /etc/passwd",
            ),
            (
                &["--user", "app:ghosts"][..],
                "invalid value 'ghosts' for '--user': no such name in /etc/group",
            ),
            (
                &["--user", "app", "--group", "ghosts"][..],
                "invalid value 'ghosts' for '--group': no such name in /etc/group",
            ),
            (
                &["--user", "app", "--groups", "users,ghosts"][..],
                "invalid value 'ghosts' for '--groups': no such name in /etc/group",
            ),
        ] {
            let error = resolve(args).unwrap_err();
            assert_eq!(error.to_string(), expected);
        }
        // Without the files only numbers resolve.
        let error = resolve_target(&privileges(&["--user", "nobody"]), &root(), "", "");
        assert!(matches!(error, Err(ResolveError::UnknownName { .. })));
        let target =
            resolve_target(&privileges(&["--user", "10001:10001"]), &root(), "", "").unwrap();
        assert_eq!(target.groups, [10001]);
    }

    #[test]
    fn root_is_refused_unless_allowed() {
        for args in [
            &[][..],
            &["--user", "root"],
            &["--user", "0:100"],
            &["--groups", "users"],
        ] {
            let error = resolve(args).unwrap_err();
            assert!(matches!(error, ResolveError::RootRefused), "{args:?}");
            let message = error.to_string();
            assert!(
                message.contains("--user") && message.contains("runAsUser"),
                "{message}"
            );
        }
        let target = resolve(&["--allow-root"]).unwrap();
        assert_eq!(
            (target.uid, target.gid, &target.groups[..]),
            (0, 0, &[0][..])
        );
        assert!(!target.change_ids, "nothing asked: no set-id call");
        assert!(target.login.is_none());
        let target = resolve(&["--allow-root", "--groups", "users"]).unwrap();
        assert_eq!(target.groups, [100]);
        assert!(target.change_ids);
        let target = resolve(&["--allow-root", "--user", "root"]).unwrap();
        assert_eq!(target.login.unwrap().home, "/root");
    }

    #[test]
    fn a_non_root_pyinit_keeps_its_ids_and_refuses_to_switch() {
        let app = CurrentIds {
            uid: 10001,
            gid: 10001,
            groups: vec![10001, 100],
        };
        let resolve_as_app = |args: &[&str]| resolve_target(&privileges(args), &app, PASSWD, GROUP);
        let target = resolve_as_app(&[]).unwrap();
        assert_eq!((target.uid, target.gid), (10001, 10001));
        assert_eq!(target.groups, [100, 10001]);
        assert!(!target.change_ids);
        // Naming the user pyinit already is, is fine, and sets the login variables.
        for args in [
            &["--user", "app"][..],
            &["--user", "10001:10001"],
            &["--groups", "100,app"],
        ] {
            let target = resolve_as_app(args).unwrap();
            assert!(!target.change_ids, "{args:?}");
            assert_eq!(target.groups, [100, 10001]);
        }
        for (args, wanted) in [
            (&["--user", "nobody"][..], "uid 65534 gid 65534"),
            (&["--user", "app:users"], "uid 10001 gid 100"),
            (&["--groups", ""], "uid 10001 gid 10001 groups []"),
        ] {
            let error = resolve_as_app(args).unwrap_err();
            assert!(matches!(error, ResolveError::NotRoot { .. }), "{args:?}");
            let message = error.to_string();
            assert!(
                message.contains(wanted) && message.contains("uid 10001, not root"),
                "{args:?}: {message}"
            );
        }
    }
}
