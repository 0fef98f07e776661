//! prometheus_client's multiprocess directory, prepared before the app starts: the last run's
//! `*.db` files removed, the directory created for the app's user if it is missing, and a check,
//! as that user, that the app can write there.
//!
//! A container restart keeps an emptyDir volume, and prometheus_client would then serve the dead
//! processes' counters and gauges as its own. `main` calls [`prepare_directory`] after the app's
//! ids are resolved and before privileges drop, so that pyinit, as root, can create the
//! directory where only root may write (`/var/run`, `/` of an image) and remove files a
//! previous user left; [`PreparedDir::check_app_can_write`] runs after the drop, since only the
//! app's own ids (and the mount) say whether it can write there. Every call is relative to a
//! directory descriptor: the parent is opened once, the directory itself with
//! `O_NOFOLLOW | O_DIRECTORY`, and each file is unlinked by name in it, so a symbolic link is
//! never followed, neither in place of the directory nor as one of its `*.db` entries (the link
//! is removed, never what it points to); a `*.db` that is a directory is kept, and nothing below
//! it is looked at. Which directory, and which names, is decided in `spec.rs`, purely. What was
//! done is logged once the app has started, with the other start-up facts
//! ([`MultiprocReport::log`]); any failure stops pyinit with exit 125 before the app exists.

pub mod spec;

use std::ffi::{CString, OsString};
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, open, openat};
use nix::sys::stat::{Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{AccessFlags, Gid, Uid, UnlinkatFlags, faccessat, fchown, unlinkat};
use tracing::{info, warn};

use crate::exit;
use spec::{InvalidDir, MultiprocDir, app_directory_mode, is_prometheus_file};

/// Whom the directory is prepared for: the app's ids after the drop and its `--umask`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppOwner {
    pub uid: u32,
    pub gid: u32,
    /// `--umask`, when given; otherwise the app inherits pyinit's, which `mkdir` applies.
    pub umask: Option<u32>,
}

/// Why the directory could not be prepared; always exit 125, always one line.
#[derive(Debug)]
pub enum MultiprocError {
    /// The variable names no directory pyinit could prepare.
    Invalid(InvalidDir),
    /// A step failed: what pyinit tried, and the errno when it adds to the step.
    Os {
        variable: &'static str,
        path: PathBuf,
        step: String,
        source: Option<Errno>,
    },
}

impl MultiprocError {
    pub fn exit_code(&self) -> u8 {
        exit::SETUP_FAILED
    }
}

impl fmt::Display for MultiprocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MultiprocError::Invalid(invalid) => write!(f, "{invalid}"),
            MultiprocError::Os {
                variable,
                path,
                step,
                source,
            } => {
                write!(
                    f,
                    "cannot prepare prometheus_client's multiprocess directory {} ({variable}): \
                     {step}",
                    path.display()
                )?;
                match source {
                    Some(errno) => write!(f, ": {errno}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl std::error::Error for MultiprocError {}

/// The directory, opened and emptied of the last run's files, waiting for the check as the app.
#[derive(Debug)]
pub struct PreparedDir {
    dir: MultiprocDir,
    fd: OwnedFd,
    created: bool,
    cleaned: Cleaned,
    app_uid: u32,
}

/// What became of the `*.db` entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// How many files (or symbolic links) were removed.
    pub removed: usize,
    /// The names of the `*.db` entries that are directories, which pyinit keeps.
    pub kept_directories: Vec<String>,
}

/// What was done, for the start-up log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiprocReport {
    pub variable: &'static str,
    pub path: PathBuf,
    /// pyinit created it, for the app's user.
    pub created: bool,
    pub cleaned: Cleaned,
    pub app_uid: u32,
}

/// Prepares the directory when `enabled` (`--prepare-multiproc-dir`) and the app's environment
/// names one. That environment is pyinit's own with pyinit's variables on top, none of which is
/// prometheus_client's, so pyinit's own environment is what is read.
pub fn prepare_for_app(
    enabled: bool,
    owner: AppOwner,
) -> Result<Option<PreparedDir>, MultiprocError> {
    if !enabled {
        return Ok(None);
    }
    prepare_directory(|name| std::env::var_os(name), owner)
}

/// Prepares the directory the app's environment names (`lookup` reads one of its variables),
/// if it names one: opens it, or creates it for `owner`, and removes the `*.db` files in it.
pub fn prepare_directory(
    lookup: impl Fn(&str) -> Option<OsString>,
    owner: AppOwner,
) -> Result<Option<PreparedDir>, MultiprocError> {
    let Some(dir) = spec::multiproc_dir(lookup).map_err(MultiprocError::Invalid)? else {
        return Ok(None);
    };
    let (fd, created) = open_or_create(&dir, owner)?;
    let cleaned = remove_prometheus_files(&dir, &fd)?;
    Ok(Some(PreparedDir {
        dir,
        fd,
        created,
        cleaned,
        app_uid: owner.uid,
    }))
}

impl PreparedDir {
    /// Checks, with the ids pyinit runs as now (the app's, after the drop), that the app can
    /// create files in the directory: write and search permission, on a writable mount.
    pub fn check_app_can_write(self) -> Result<MultiprocReport, MultiprocError> {
        let access = AccessFlags::W_OK | AccessFlags::X_OK;
        faccessat(&self.fd, ".", access, AtFlags::empty()).map_err(|errno| {
            failure(
                &self.dir,
                format!("the app's user (uid {}) cannot write to it", self.app_uid),
                errno,
            )
        })?;
        Ok(MultiprocReport {
            variable: self.dir.variable,
            path: self.dir.path,
            created: self.created,
            cleaned: self.cleaned,
            app_uid: self.app_uid,
        })
    }
}

impl MultiprocReport {
    /// One line: the directory, and what pyinit did to it; and a warning when a `*.db` entry
    /// is a directory, since prometheus_client's collector fails on one (IsADirectoryError).
    pub fn log(&self) {
        let done = match (self.created, self.cleaned.removed) {
            (true, _) => format!("created for uid {}", self.app_uid),
            (false, 0) => "no stale *.db files".to_owned(),
            (false, 1) => "removed 1 stale *.db file".to_owned(),
            (false, removed) => format!("removed {removed} stale *.db files"),
        };
        info!(
            path = %self.path.display(),
            variable = self.variable,
            created = self.created,
            removed = self.cleaned.removed,
            "prometheus_client's multiprocess directory prepared: {done}"
        );
        if !self.cleaned.kept_directories.is_empty() {
            warn!(
                path = %self.path.display(),
                "prometheus_client's multiprocess directory holds directories named *.db ({}): \
                 pyinit keeps them, but prometheus_client's collector fails on them; remove or \
                 rename them",
                self.cleaned.kept_directories.join(", ")
            );
        }
    }
}

fn failure(dir: &MultiprocDir, step: impl Into<String>, errno: Errno) -> MultiprocError {
    MultiprocError::Os {
        variable: dir.variable,
        path: dir.path.clone(),
        step: step.into(),
        source: Some(errno),
    }
}

/// Opens the directory without following a symbolic link in its place, creating it first (for
/// the app's user) if it is missing; true when pyinit created it.
fn open_or_create(dir: &MultiprocDir, owner: AppOwner) -> Result<(OwnedFd, bool), MultiprocError> {
    let parent_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let parent = open(&dir.parent, parent_flags, Mode::empty()).map_err(|errno| {
        // pyinit creates the directory, not its parents: a missing parent is a typo or a volume
        // that is not mounted, and creating it would hide that.
        failure(
            dir,
            format!("cannot open its parent {}", dir.parent.display()),
            errno,
        )
    })?;
    let name = CString::new(dir.name.as_bytes()).map_err(|_| MultiprocError::Os {
        variable: dir.variable,
        path: dir.path.clone(),
        step: "the name holds a NUL byte".to_owned(),
        source: None,
    })?;
    // The app's own mkdir would ask for 0777 and let the umask take its bits away.
    let created = match mkdirat(&parent, name.as_c_str(), Mode::from_bits_truncate(0o777)) {
        Ok(()) => true,
        Err(Errno::EEXIST) => false,
        Err(errno) => return Err(failure(dir, "cannot create it", errno)),
    };
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(&parent, name.as_c_str(), flags, Mode::empty()).map_err(|errno| {
        // Linux answers ENOTDIR for a symbolic link opened with O_DIRECTORY | O_NOFOLLOW, as for
        // a file: the entry itself says which it is.
        let is_symlink = || {
            fstatat(&parent, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|stat| {
                SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
            })
        };
        let (step, errno) = match errno {
            Errno::ELOOP | Errno::ENOTDIR if is_symlink() => {
                ("it is a symbolic link, which pyinit does not follow", None)
            }
            Errno::ENOTDIR => ("it is not a directory", None),
            other => ("cannot open it", Some(other)),
        };
        MultiprocError::Os {
            variable: dir.variable,
            path: dir.path.clone(),
            step: step.to_owned(),
            source: errno,
        }
    })?;
    if created {
        give_to_app(dir, &fd, owner)?;
    }
    Ok((fd, created))
}

/// Makes a directory pyinit just created the app's, as the app's own `mkdir` would have made
/// it: its owner, its group unless the directory inherited its parent's through the setgid bit
/// (a Kubernetes `fsGroup` volume), and the mode `--umask` gives.
fn give_to_app(dir: &MultiprocDir, fd: &OwnedFd, owner: AppOwner) -> Result<(), MultiprocError> {
    let stat = fstat(fd).map_err(|errno| failure(dir, "cannot stat it", errno))?;
    let inherited_setgid = Mode::from_bits_truncate(stat.st_mode).contains(Mode::S_ISGID);
    let group = (!inherited_setgid).then_some(owner.gid);
    if stat.st_uid != owner.uid || group.is_some_and(|gid| gid != stat.st_gid) {
        fchown(fd, Some(Uid::from_raw(owner.uid)), group.map(Gid::from_raw)).map_err(|errno| {
            let to = match group {
                Some(gid) => format!("{}:{gid}", owner.uid),
                None => owner.uid.to_string(),
            };
            failure(dir, format!("cannot give it to {to}"), errno)
        })?;
    }
    if let Some(umask) = owner.umask {
        let mode = app_directory_mode(umask, inherited_setgid);
        fchmod(fd, Mode::from_bits_truncate(mode))
            .map_err(|errno| failure(dir, format!("cannot set its mode to {mode:04o}"), errno))?;
    }
    Ok(())
}

/// Unlinks every `*.db` entry of the directory that is not a directory itself; a symbolic link
/// is removed as a link.
fn remove_prometheus_files(dir: &MultiprocDir, fd: &OwnedFd) -> Result<Cleaned, MultiprocError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut listing = Dir::openat(fd, ".", flags, Mode::empty())
        .map_err(|errno| failure(dir, "cannot list it", errno))?;
    // Names first, unlinks after: the listing is not changed while it is read.
    let mut stale: Vec<CString> = Vec::new();
    let mut cleaned = Cleaned::default();
    for entry in listing.iter() {
        let entry = entry.map_err(|errno| failure(dir, "cannot list it", errno))?;
        let name = entry.file_name();
        if !is_prometheus_file(name.to_bytes()) {
            continue;
        }
        if entry.file_type() == Some(Type::Directory) {
            cleaned
                .kept_directories
                .push(name.to_string_lossy().into_owned());
            continue;
        }
        stale.push(name.to_owned());
    }
    for name in &stale {
        match unlinkat(fd.as_fd(), name.as_c_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) => cleaned.removed += 1,
            // Gone already, or a directory the listing could not tell (no d_type): kept.
            Err(Errno::ENOENT) => {}
            Err(Errno::EISDIR) => {
                let kept = name.to_string_lossy().into_owned();
                cleaned.kept_directories.push(kept);
            }
            Err(errno) => {
                let shown = name.to_string_lossy();
                return Err(failure(dir, format!("cannot remove {shown}"), errno));
            }
        }
    }
    Ok(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::symlink;
    use std::path::Path;

    /// A fresh directory under the system's temporary folder, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let path = std::env::temp_dir().join(format!(
                "pyinit-multiproc-unit-{}-{name}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Scratch(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn lookup_of(path: &Path) -> impl Fn(&str) -> Option<OsString> {
        let value = path.as_os_str().to_owned();
        move |name| (name == spec::VARIABLE).then(|| value.clone())
    }

    fn my_ids() -> AppOwner {
        AppOwner {
            uid: Uid::effective().as_raw(),
            gid: Gid::effective().as_raw(),
            umask: None,
        }
    }

    #[test]
    fn removes_the_db_files_and_keeps_the_rest() {
        let scratch = Scratch::new("remove");
        let dir = scratch.0.join("prom");
        std::fs::create_dir(&dir).unwrap();
        let outside = scratch.0.join("outside.db");
        std::fs::write(&outside, "not the app's").unwrap();
        for name in [
            "counter_1.db",
            "gauge_livesum_2.db",
            "notes.txt",
            ".hidden.db",
        ] {
            std::fs::write(dir.join(name), "x").unwrap();
        }
        std::fs::create_dir(dir.join("keep.db")).unwrap();
        std::fs::write(dir.join("keep.db/inner.db"), "x").unwrap();
        symlink(&outside, dir.join("link.db")).unwrap();

        let prepared = prepare_directory(lookup_of(&dir), my_ids())
            .unwrap()
            .unwrap();
        let report = prepared.check_app_can_write().unwrap();

        assert_eq!(report.cleaned.removed, 3, "{report:?}");
        assert_eq!(report.cleaned.kept_directories, ["keep.db"]);
        assert!(!report.created);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".hidden.db", "keep.db", "notes.txt"]);
        assert!(
            dir.join("keep.db/inner.db").exists(),
            "nothing below is touched"
        );
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "not the app's");
    }

    #[test]
    fn creates_a_missing_directory() {
        let scratch = Scratch::new("create");
        let dir = scratch.0.join("prom");
        let owner = AppOwner {
            umask: Some(0o027),
            ..my_ids()
        };
        let report = prepare_directory(lookup_of(&dir), owner)
            .unwrap()
            .unwrap()
            .check_app_can_write()
            .unwrap();
        assert!(report.created);
        assert_eq!(report.cleaned, Cleaned::default());
        let mode = std::fs::metadata(&dir).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o7777,
            0o750
        );
    }

    #[test]
    fn a_symbolic_link_in_place_of_the_directory_is_refused() {
        let scratch = Scratch::new("symlink");
        let target = scratch.0.join("elsewhere");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("counter_1.db"), "x").unwrap();
        let dir = scratch.0.join("prom");
        symlink(&target, &dir).unwrap();

        let error = prepare_directory(lookup_of(&dir), my_ids()).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "cannot prepare prometheus_client's multiprocess directory {} \
                 (PROMETHEUS_MULTIPROC_DIR): it is a symbolic link, which pyinit does not follow",
                dir.display()
            )
        );
        assert_eq!(error.exit_code(), 125);
        assert!(target.join("counter_1.db").exists());
    }

    #[test]
    fn a_file_in_place_of_the_directory_or_a_missing_parent_is_refused() {
        let scratch = Scratch::new("file");
        let file = scratch.0.join("prom");
        std::fs::write(&file, "x").unwrap();
        let error = prepare_directory(lookup_of(&file), my_ids()).unwrap_err();
        assert!(
            error.to_string().ends_with(": it is not a directory"),
            "{error}"
        );

        let orphan = scratch.0.join("missing/prom");
        let error = prepare_directory(lookup_of(&orphan), my_ids()).unwrap_err();
        let message = error.to_string();
        assert!(
            message.ends_with(&format!(
                ": cannot open its parent {}: ENOENT: No such file or directory",
                scratch.0.join("missing").display()
            )),
            "{message}"
        );
        assert!(!scratch.0.join("missing").exists());
    }

    #[test]
    fn no_variable_prepares_nothing() {
        assert!(prepare_directory(|_| None, my_ids()).unwrap().is_none());
    }
}
