//! Which server the app's command runs: the program's base name (`/venv/bin/gunicorn` is
//! gunicorn), the same behind a Python interpreter (`python -m uvicorn`, `python3.11 -m celery`,
//! `python manage.py runserver`), and for commands with subcommands the subcommand that is the
//! server (`celery -A proj worker`, not `celery beat`). Pure: the command is a parameter, and
//! nothing is looked up on disk. A wrapper (`ddtrace-run gunicorn ...`, a shell) hides the
//! server: `--server NAME` names it then.

use std::ffi::OsString;
use std::path::Path;

use super::{DEVELOPMENT_SERVERS, DevelopmentServer, Launch, PROFILES, ServerProfile};

/// What the app's command runs, as far as pyinit can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recognised {
    Server(&'static ServerProfile),
    /// A development server: pyinit warns, and changes nothing.
    Development(&'static DevelopmentServer),
    Unknown,
}

/// The server `command` (argv, program first) runs.
pub fn recognise(command: &[OsString]) -> Recognised {
    let Some(started) = Started::from_command(command) else {
        return Recognised::Unknown;
    };
    if let Some(profile) = PROFILES
        .iter()
        .find(|profile| started.runs(&profile.launch))
    {
        return Recognised::Server(profile);
    }
    if let Some(server) = DEVELOPMENT_SERVERS
        .iter()
        .find(|server| started.runs(&server.launch))
    {
        return Recognised::Development(server);
    }
    Recognised::Unknown
}

/// True if `command` has the option `option`, alone (`--die-on-term`) or with its value
/// (`--hook-master-start=...`).
pub fn has_option(command: &[OsString], option: &str) -> bool {
    command.iter().filter_map(|word| word.to_str()).any(|word| {
        word.strip_prefix(option)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
    })
}

/// True if `words` set a server's worker count: `-w N`, `-wN`, `--workers N` or `--workers=N`
/// (gunicorn's and uvicorn's options), which the server reads instead of `WEB_CONCURRENCY`.
pub fn sets_worker_count<'a>(words: impl IntoIterator<Item = &'a str>) -> bool {
    words.into_iter().any(|word| {
        let count = (word.strip_prefix("--workers"))
            .filter(|rest| rest.is_empty() || rest.starts_with('='));
        count.is_some()
            || (word.strip_prefix("-w"))
                .is_some_and(|count| count.bytes().all(|byte| byte.is_ascii_digit()))
    })
}

/// What is started: a program by its base name, or a module behind `python -m`, with its
/// arguments.
#[derive(Debug, PartialEq, Eq)]
struct Started<'a> {
    name: Name<'a>,
    args: &'a [OsString],
}

#[derive(Debug, PartialEq, Eq)]
enum Name<'a> {
    Program(&'a str),
    Module(&'a str),
}

impl<'a> Started<'a> {
    fn from_command(command: &'a [OsString]) -> Option<Started<'a>> {
        let (program, args) = command.split_first()?;
        let program = base_name(program.to_str()?)?;
        if is_python(program) {
            return after_interpreter(args);
        }
        Some(Started {
            name: Name::Program(program),
            args,
        })
    }

    fn runs(&self, launch: &Launch) -> bool {
        let named = match self.name {
            Name::Program(program) => launch.programs.contains(&program),
            Name::Module(module) => launch.modules.contains(&module),
        };
        named
            && launch.subcommand.is_none_or(|wanted| {
                subcommand(self.args, launch.options_with_values) == Some(wanted)
            })
    }
}

fn base_name(path: &str) -> Option<&str> {
    Path::new(path).file_name()?.to_str()
}

/// `python`, `python3`, `python3.11`: the interpreter, whose own options come first.
fn is_python(program: &str) -> bool {
    program
        .strip_prefix("python")
        .is_some_and(|version| version.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// What an interpreter runs, past its own options: `-m MODULE` (or `-mMODULE`, or grouped as
/// `-um MODULE`), or a script, known by its base name. `-c` and `-` (stdin) run nothing pyinit
/// can name. The options that take a value are `-W`, `-X` and `--check-hash-based-pycs`.
fn after_interpreter(args: &[OsString]) -> Option<Started<'_>> {
    let mut index = 0;
    while let Some(word) = args.get(index) {
        let word = word.to_str()?;
        index += 1;
        if word == "--check-hash-based-pycs" {
            index += 1;
            continue;
        }
        if word.starts_with("--") {
            continue;
        }
        let Some(letters) = word.strip_prefix('-') else {
            return Some(Started {
                name: Name::Program(base_name(word)?),
                args: args.get(index..)?,
            });
        };
        for (at, letter) in letters.char_indices() {
            let rest = letters.get(at + letter.len_utf8()..).unwrap_or_default();
            match letter {
                'm' if rest.is_empty() => {
                    let module = args.get(index)?.to_str()?;
                    return Some(Started {
                        name: Name::Module(module),
                        args: args.get(index + 1..)?,
                    });
                }
                'm' => {
                    return Some(Started {
                        name: Name::Module(rest),
                        args: args.get(index..)?,
                    });
                }
                'c' => return None,
                'W' | 'X' => {
                    if rest.is_empty() {
                        index += 1;
                    }
                    break;
                }
                _ => {}
            }
        }
        // `-` alone is the script on stdin.
        if letters.is_empty() {
            return None;
        }
    }
    None
}

/// The first word that is not an option nor the value of one of `options_with_values`.
fn subcommand<'a>(args: &'a [OsString], options_with_values: &[&str]) -> Option<&'a str> {
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let word = word.to_str()?;
        if !word.starts_with('-') {
            return Some(word);
        }
        if options_with_values.contains(&word) {
            words.next();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(command: &str) -> Vec<OsString> {
        command.split_whitespace().map(OsString::from).collect()
    }

    fn server(command: &str) -> Option<&'static str> {
        match recognise(&words(command)) {
            Recognised::Server(profile) => Some(profile.name),
            Recognised::Development(_) | Recognised::Unknown => None,
        }
    }

    fn development(command: &str) -> Option<&'static str> {
        match recognise(&words(command)) {
            Recognised::Development(server) => Some(server.name),
            Recognised::Server(_) | Recognised::Unknown => None,
        }
    }

    #[test]
    fn each_server_by_its_program_and_module() {
        for (command, name) in [
            ("gunicorn app:app", "gunicorn"),
            (
                "/venv/bin/gunicorn -k uvicorn_worker.UvicornWorker app:app",
                "gunicorn",
            ),
            ("uvicorn app:app --port 8000", "uvicorn"),
            ("hypercorn app:app", "hypercorn"),
            ("granian --interface asgi app:app", "granian"),
            ("uwsgi --http-socket :8000 --wsgi-file app.py", "uwsgi"),
            ("pyuwsgi --ini app.ini", "uwsgi"),
            ("waitress-serve app:app", "waitress"),
            ("daphne app:application", "daphne"),
            ("celery -A proj worker -l info", "celery"),
            ("python -m gunicorn app:app", "gunicorn"),
            ("python3 -m uvicorn app:app", "uvicorn"),
            ("/usr/bin/python3.11 -m hypercorn app:app", "hypercorn"),
            ("python -m granian app:app", "granian"),
            ("python -m waitress app:app", "waitress"),
            ("python3 -m daphne app:application", "daphne"),
            ("python -m celery --app proj worker", "celery"),
            ("python -u -m uvicorn app:app", "uvicorn"),
            ("python -um uvicorn app:app", "uvicorn"),
            ("python -muvicorn app:app", "uvicorn"),
            ("python -W ignore -X dev -m uvicorn app:app", "uvicorn"),
            ("python -Wignore -m uvicorn app:app", "uvicorn"),
            ("python /venv/bin/gunicorn app:app", "gunicorn"),
        ] {
            assert_eq!(server(command), Some(name), "{command}");
        }
    }

    #[test]
    fn celery_is_a_server_only_as_a_worker() {
        assert_eq!(server("celery worker"), Some("celery"));
        assert_eq!(server("celery -A worker beat"), None);
        assert_eq!(
            server("celery --app=proj -b redis://x worker -c 2"),
            Some("celery")
        );
        assert_eq!(server("celery -A proj beat"), None);
        assert_eq!(server("celery -A proj flower"), None);
        assert_eq!(server("celery -A proj"), None);
        assert_eq!(server("python -m celery -A proj inspect ping"), None);
    }

    #[test]
    fn other_commands_are_not_servers() {
        for command in [
            "python app.py",
            "python -c import-uvicorn",
            "python -",
            "python",
            "python -m",
            "python -m http.server",
            "ddtrace-run gunicorn app:app",
            "gunicorn3 app:app",
            "sh -c gunicorn",
            "pythonista -m uvicorn",
            "sleep 60",
        ] {
            assert_eq!(recognise(&words(command)), Recognised::Unknown, "{command}");
        }
        assert_eq!(recognise(&[]), Recognised::Unknown);
        // A program name that is not UTF-8 is nobody's.
        use std::os::unix::ffi::OsStringExt;
        let odd = vec![OsString::from_vec(vec![0xff, b'x'])];
        assert_eq!(recognise(&odd), Recognised::Unknown);
    }

    #[test]
    fn development_servers_by_their_subcommands() {
        for command in [
            "python manage.py runserver 0.0.0.0:8000",
            "./manage.py runserver",
            "django-admin runserver",
            "python -m django runserver",
        ] {
            assert_eq!(
                development(command),
                Some("Django's runserver"),
                "{command}"
            );
        }
        for command in [
            "flask run",
            "flask --app hello run --port 80",
            "python -m flask run",
        ] {
            assert_eq!(development(command), Some("flask run"), "{command}");
        }
        for command in [
            "python manage.py migrate",
            "flask --app run routes",
            "django-admin check",
        ] {
            assert_eq!(recognise(&words(command)), Recognised::Unknown, "{command}");
        }
    }

    #[test]
    fn options_are_found_alone_or_with_a_value() {
        let command = words("uwsgi --die-on-term --hook-master-start=unix_signal:1 x");
        assert!(has_option(&command, "--die-on-term"));
        assert!(has_option(&command, "--hook-master-start"));
        assert!(!has_option(&command, "--hook"));
        assert!(!has_option(
            &words("uwsgi --die-on-terminal"),
            "--die-on-term"
        ));
    }
}
