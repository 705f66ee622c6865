//! `ankus repl`: driven through a pseudo-terminal like an operator would (completion,
//! multi-line input, `:help`, Ctrl-C, history across sessions), piped like a script would, and
//! in-process with a prelude as the sandbox will start it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{ankus_bin, temp_dir, write};

/// How long any one expectation may take before the test fails (never hangs CI).
const EXPECT_TIMEOUT: Duration = Duration::from_secs(20);

fn fixture() -> PathBuf {
    crate::support::fixture_dump()
}

/// Removes terminal control sequences so tests match on what a person reads.
fn strip_ansi(raw: &str) -> String {
    let mut plain = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch != '\x1b' {
            plain.push(ch);
            continue;
        }
        match chars.next() {
            Some('[') => {
                // CSI: parameters, then one final byte in @..~.
                for next in chars.by_ref() {
                    if ('@'..='~').contains(&next) {
                        break;
                    }
                }
            }
            Some(']') => {
                // OSC: up to BEL or ST.
                while let Some(next) = chars.next() {
                    if next == '\x07' || (next == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    plain
}

/// An `ankus repl` on a pseudo-terminal. It answers the cursor-position queries a real
/// terminal would, and keeps everything shown so far.
struct Pty {
    session: expectrl::Session,
    raw: Vec<u8>,
    /// Where [`Pty::expect`] looks next, in the stripped text.
    seen: usize,
    /// Where [`Pty::prompt`] looks next, in the raw bytes.
    raw_seen: usize,
    /// Where the next cursor-position query may start, in the raw bytes.
    queries_seen: usize,
}

/// The cursor-position query crossterm sends; a real terminal answers it.
const CURSOR_QUERY: &[u8] = b"\x1b[6n";

/// reedline turns bracketed paste on each time it starts reading a line, and only then, so
/// this marks a fresh prompt (the prompt text itself is repainted on every key).
const READING: &[u8] = b"\x1b[?2004h";

impl Pty {
    fn spawn(dir: &Path, history: &Path) -> Pty {
        Pty::spawn_with(dir, history, &[])
    }

    /// [`Pty::spawn`] with more environment.
    fn spawn_with(dir: &Path, history: &Path, envs: &[(&str, &str)]) -> Pty {
        let mut command = Command::new(ankus_bin());
        command
            .arg("repl")
            .current_dir(dir)
            .env("TERM", "xterm")
            .env("HOME", dir)
            .env("ANKUS_HISTORY", history)
            .env_remove("ANKUS_SCRIPTS")
            .env_remove("KUBECONFIG")
            .env_remove("PACH_CONFIG")
            .env_remove("NO_COLOR")
            .envs(envs.iter().copied());
        let session = expectrl::Session::spawn(command).expect("ankus repl starts on a pty");
        let mut pty = Pty {
            session,
            raw: Vec::new(),
            seen: 0,
            raw_seen: 0,
            queries_seen: 0,
        };
        pty.prompt();
        pty
    }

    fn text(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(&self.raw))
    }

    /// Reads what is available; false once the process has closed the terminal.
    fn pump(&mut self) -> bool {
        let mut buffer = [0u8; 8192];
        match self.session.try_read(&mut buffer) {
            Ok(0) => false,
            Ok(count) => {
                self.raw.extend_from_slice(&buffer[..count]);
                // A query may arrive split over two reads, so look in everything unanswered.
                while let Some(found) = self.raw[self.queries_seen..]
                    .windows(CURSOR_QUERY.len())
                    .position(|window| window == CURSOR_QUERY)
                {
                    self.queries_seen += found + CURSOR_QUERY.len();
                    self.session
                        .send("\x1b[5;1R")
                        .expect("answer the cursor query");
                }
                true
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
                true
            }
            Err(_) => false,
        }
    }

    /// Waits until `needle` appears after what earlier expectations matched; returns the text
    /// between them.
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + EXPECT_TIMEOUT;
        loop {
            let text = self.text();
            if let Some(found) = text[self.seen..].find(needle) {
                let before = text[self.seen..self.seen + found].to_owned();
                self.seen += found + needle.len();
                return before;
            }
            let open = self.pump();
            assert!(
                open && Instant::now() < deadline,
                "did not see {needle:?} (process {}); the terminal showed:\n{}",
                if open { "running" } else { "gone" },
                &text[self.seen..]
            );
        }
    }

    /// Waits for the REPL to read its next line; returns what was shown since the previous
    /// prompt, without control sequences.
    fn prompt(&mut self) -> String {
        let deadline = Instant::now() + EXPECT_TIMEOUT;
        loop {
            if let Some(found) = self.raw[self.raw_seen..]
                .windows(READING.len())
                .position(|window| window == READING)
            {
                let start = self.raw_seen;
                self.raw_seen += found + READING.len();
                self.seen = strip_ansi(&String::from_utf8_lossy(&self.raw[..self.raw_seen])).len();
                return strip_ansi(&String::from_utf8_lossy(&self.raw[start..start + found]));
            }
            let open = self.pump();
            assert!(
                open && Instant::now() < deadline,
                "the REPL did not prompt again; the terminal showed:\n{}",
                strip_ansi(&String::from_utf8_lossy(&self.raw[self.raw_seen..]))
            );
        }
    }

    fn send(&mut self, keys: &str) {
        self.session.send(keys).expect("send keys");
    }

    /// Types a line and presses Enter.
    fn line(&mut self, text: &str) {
        self.send(text);
        self.send("\r");
    }

    /// Sends Ctrl-D and waits for the process to end; returns its exit status as text.
    fn quit(mut self) -> String {
        self.send("\x04");
        let deadline = Instant::now() + EXPECT_TIMEOUT;
        while self.pump() {
            assert!(Instant::now() < deadline, "repl did not exit on Ctrl-D");
        }
        format!(
            "{:?}",
            self.session.get_process().wait().expect("exit status")
        )
    }
}

#[test]
fn pty_state_across_lines_and_a_multi_line_function() {
    let dir = temp_dir();
    let mut repl = Pty::spawn(dir.path(), &dir.path().join("history.txt"));
    repl.line("let base = 40;");
    repl.prompt();
    repl.line("fn add(a,");
    repl.expect("  ... ");
    repl.line("  b) {");
    repl.line("  a + b");
    repl.line("}");
    let shown = repl.prompt();
    assert!(shown.contains("  ...   a + b\r\n  ... }"), "{shown:?}");
    repl.line("add(base, 2) * 10");
    let shown = repl.prompt();
    assert!(shown.contains("\r\n420\r\n"), "{shown:?}");
    repl.line(":fns");
    let shown = repl.prompt();
    assert!(shown.contains("fn add(a, b)"), "{shown:?}");
    let status = repl.quit();
    assert!(
        status.contains("Exited") && status.ends_with(", 0)"),
        "{status}"
    );
}

#[test]
fn pty_tab_completes_a_method_of_a_typed_value() {
    let dir = temp_dir();
    let mut repl = Pty::spawn(dir.path(), &dir.path().join("history.txt"));
    repl.line(&format!("let b = backup::open({:?});", fixture()));
    repl.prompt();
    repl.send("b.su\t");
    repl.expect("b.summary(");
    repl.send(").records\r");
    let shown = repl.prompt();
    assert!(
        shown.contains("b.summary().records\r\n631\r\n"),
        "{shown:?}"
    );
    repl.send("backup::ope\t");
    repl.expect("backup::open(");
    // Ctrl-C while editing drops the line and prompts again.
    repl.send("\x03");
    repl.prompt();
    repl.quit();
}

#[test]
fn pty_help_shows_the_doc_comment_and_example() {
    let dir = temp_dir();
    let mut repl = Pty::spawn(dir.path(), &dir.path().join("history.txt"));
    repl.line(":help backup::open");
    let shown = repl.prompt();
    assert!(
        shown.contains("backup::open(source: &str) -> BindingResult<Backup>"),
        "{shown:?}"
    );
    assert!(shown.contains("Opens a dump"), "{shown:?}");
    assert!(
        shown.contains("let b = backup::open(\"prod.dump\");"),
        "{shown:?}"
    );
    repl.quit();
}

#[test]
fn pty_ctrl_c_interrupts_a_long_call_and_keeps_the_session() {
    let dir = temp_dir();
    let mut repl = Pty::spawn(dir.path(), &dir.path().join("history.txt"));
    repl.line("let kept = 41;");
    repl.prompt();
    repl.line("print(\"sleep\" + \"ing\"); sleep(30); print(\"woke\")");
    repl.expect("\r\nsleeping\r\n");
    repl.send("\x03");
    let shown = repl.prompt();
    assert!(shown.contains("\r\nerror: interrupted\r\n"), "{shown:?}");
    assert!(!shown.contains("\r\nwoke"), "{shown:?}");
    repl.line("kept + 1");
    let shown = repl.prompt();
    assert!(shown.contains("\r\n42\r\n"), "{shown:?}");
    let status = repl.quit();
    assert!(status.ends_with(", 0)"), "{status}");
}

#[test]
fn pty_history_persists_across_sessions_and_ctrl_r_finds_it() {
    let dir = temp_dir();
    let history = dir.path().join("state/history.txt");
    let mut first = Pty::spawn(dir.path(), &history);
    first.line("1000 + 234");
    let shown = first.prompt();
    assert!(shown.contains("\r\n1234\r\n"), "{shown:?}");
    first.quit();
    let saved = std::fs::read_to_string(&history).expect("history file written");
    assert!(saved.contains("1000 + 234"), "{saved:?}");

    let mut second = Pty::spawn(dir.path(), &history);
    second.send("\x12");
    second.expect("search: ");
    second.send("1000");
    second.expect("1000 + 234");
    // The first Enter takes the found line, the second runs it.
    second.send("\r\r");
    let shown = second.prompt();
    assert!(shown.contains("\r\n1234\r\n"), "{shown:?}");
    second.quit();
}

/// Runs `ankus repl` in `dir` with `input` piped to stdin.
fn piped(dir: &Path, input: &str) -> crate::support::Outcome {
    piped_with_env(dir, input, &[])
}

fn piped_with_env(dir: &Path, input: &str, env: &[(&str, &str)]) -> crate::support::Outcome {
    let mut child = Command::new(ankus_bin())
        .arg("repl")
        .current_dir(dir)
        .env_remove("ANKUS_SCRIPTS")
        .env("ANKUS_HISTORY", dir.join("history.txt"))
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ankus repl runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("ankus repl ends").into()
}

#[test]
fn piped_mode_hides_secrets_the_session_loaded_in_results_and_errors() {
    let dir = temp_dir();
    let secret = "repl-secret-7f3a9c1e";
    // Opening an S3 store loads the secret key (no request is made).
    let input = "let s = store::open(\"s3://bucket\", #{ endpoint: \"http://127.0.0.1:9\" });\n\
                 `key: ${env(\"AWS_SECRET_ACCESS_KEY\")}`\n\
                 throw `bad ${env(\"AWS_SECRET_ACCESS_KEY\")}`\n";
    let outcome = piped_with_env(
        dir.path(),
        input,
        &[
            ("AWS_ACCESS_KEY_ID", "repl-key-id"),
            ("AWS_SECRET_ACCESS_KEY", secret),
        ],
    );
    assert_eq!(outcome.code, 1, "the throw fails the session: {outcome:?}");
    assert!(outcome.stdout.contains("key: ***"), "{outcome:?}");
    assert!(outcome.stderr.contains("bad ***"), "{outcome:?}");
    assert!(
        !outcome.stdout.contains(secret) && !outcome.stderr.contains(secret),
        "{outcome:?}"
    );
}

#[test]
fn piped_mode_reads_lines_keeps_state_and_prints_results() {
    let dir = temp_dir();
    let fixture = fixture();
    let input = format!(
        "let b = backup::open({fixture:?});\n\
         fn twice(x) {{\n  x * 2\n}}\n\
         twice(b.summary().records)\n\
         print(`repos: ${{b.summary().repos.len()}}`);\n\
         #{{ name: \"a\", n: [1, 2] }}\n\
         :vars\n"
    );
    let outcome = piped(dir.path(), &input);
    assert_eq!(outcome.code, 0, "{outcome:?}");
    assert!(
        outcome.stdout.starts_with(
            "1262\nrepos: 5\n{\n  \"n\": [\n    1,\n    2\n  ],\n  \"name\": \"a\"\n}\n"
        ),
        "{outcome:?}"
    );
    assert!(
        outcome.stdout.contains("let b: Backup = Backup("),
        "{outcome:?}"
    );
    assert_eq!(outcome.stderr, "", "{outcome:?}");
}

#[test]
fn piped_mode_reports_errors_and_exits_1_but_continues() {
    let dir = temp_dir();
    let outcome = piped(dir.path(), "let x = 1;\nmissing_fn(x)\nx + 1\n");
    assert_eq!(outcome.code, 1, "{outcome:?}");
    assert_eq!(outcome.stdout, "2\n", "{outcome:?}");
    assert!(
        outcome
            .stderr
            .starts_with("error: Function not found: missing_fn"),
        "{outcome:?}"
    );
    assert!(outcome.stderr.contains("--> <repl:2>:1:1"), "{outcome:?}");
}

#[test]
fn meta_commands_load_run_dry_run_plan_and_save() {
    let dir = temp_dir();
    write(
        dir.path(),
        "lib.rhai",
        "fn greet(n) { `hello ${n}` }\nlet loaded = 7;\n",
    );
    write(
        dir.path(),
        "scripts/shout.rhai",
        "print(`shout ${arg(\"who\")}`);\nfs::write_text(\"out.txt\", \"x\");\n42\n",
    );
    let saved = dir.path().join("session.rhai");
    let input = format!(
        ":load lib.rhai\n\
         greet(loaded)\n\
         :dry-run on\n\
         :run shout who=ops\n\
         :plan\n\
         :dry-run off\n\
         :save {}\n\
         :run nosuch\n\
         :quit\n\
         print(\"not reached\");\n",
        saved.display()
    );
    let outcome = piped(dir.path(), &input);
    let stdout = &outcome.stdout;
    assert!(stdout.contains("\"hello 7\"\n"), "{outcome:?}");
    assert!(stdout.contains("shout ops\n42\n"), "{outcome:?}");
    assert!(
        stdout.contains("plan: 1 change(s) would be made"),
        "{outcome:?}"
    );
    assert!(stdout.contains("write_text"), "{outcome:?}");
    assert!(!stdout.contains("not reached"), "{outcome:?}");
    assert!(!dir.path().join("out.txt").exists(), "dry run wrote a file");
    assert!(
        outcome.stderr.contains("no script named 'nosuch'"),
        "{outcome:?}"
    );
    let script = std::fs::read_to_string(&saved).expect("saved script");
    assert!(script.contains("fn greet(n)"), "{script}");
    assert!(script.contains("greet(loaded);"), "{script}");
    // The saved session runs on its own.
    let rerun = crate::support::ankus_in(dir.path(), &["run", saved.to_str().expect("utf-8")]);
    assert_eq!(rerun.code, 0, "{rerun:?}");
}

#[test]
fn prelude_variables_are_in_scope_and_the_banner_is_shown() {
    use ankus::host::context::{HostCtx, HostOptions};
    use ankus::host::engine::{Limits, build_engine};

    let printed = Arc::new(Mutex::new(String::new()));
    let sink = printed.clone();
    let host = HostCtx::new(HostOptions {
        stdout: Arc::new(move |text: &str| {
            sink.lock()
                .expect("print buffer")
                .push_str(&format!("{text}\n"))
        }),
        ..HostOptions::default()
    });
    let engine = build_engine(&host, &Limits::default());
    let old: rhai::Dynamic = engine
        .eval(&format!("backup::open({:?})", fixture()))
        .expect("a Backup value");
    let prelude = ankus::repl::Prelude {
        vars: vec![("old".to_owned(), old)],
        banner: "sandbox ready: old (Backup)".to_owned(),
    };
    let input = "old\nprint(old.summary().records);\nold.verify().sha256.len()\n";
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = ankus::repl::run_piped(&host, engine, prelude, input.as_bytes(), &mut out, &mut err)
        .expect("io");
    let out = String::from_utf8(out).expect("utf-8");
    let err = String::from_utf8(err).expect("utf-8");
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(err, "sandbox ready: old (Backup)\n");
    assert!(out.starts_with("Backup("), "{out}");
    assert!(out.ends_with("\n64\n"), "{out}");
    assert_eq!(*printed.lock().expect("print buffer"), "631\n");
}

#[test]
fn not_a_terminal_without_input_exits_cleanly() {
    let dir = temp_dir();
    let mut child = Command::new(ankus_bin())
        .arg("repl")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ankus repl runs");
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read");
    assert!(child.wait().expect("exit").success());
    assert_eq!(stdout, "");
}

#[test]
fn repl_sandbox_preconnects_old_and_new_and_prints_a_banner() {
    use std::io::Write;
    let dir = crate::support::temp_dir();
    let mut child = std::process::Command::new(crate::support::ankus_bin())
        .args(["repl", "--sandbox"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("repl starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(
            b"old.version()\nnew_.version()\nk_old.service(\"pachd\").node_ports.contains(30650)\n",
        )
        .expect("write");
    let output = child.wait_with_output().expect("repl ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stdout, "Version(1.11.9)\nVersion(1.13.4)\ntrue\n",
        "{stderr}"
    );
    assert!(stderr.contains("sandbox in "), "{stderr}");
    assert!(stderr.contains("old    pachd 1.11.9"), "{stderr}");
}

/// Regression (#19): the REPL coloured its input whatever `NO_COLOR` said.
#[test]
fn pty_no_color_turns_off_syntax_colours() {
    let dir = temp_dir();
    let shown = |envs: &[(&str, &str)]| {
        let history = dir.path().join(format!("history-{}", envs.len()));
        let mut pty = Pty::spawn_with(dir.path(), &history, envs);
        pty.send("\"green text\"");
        pty.expect("green text\"");
        let raw = String::from_utf8_lossy(&pty.raw).into_owned();
        pty.send("\r");
        pty.prompt();
        pty.quit();
        raw
    };
    let coloured = shown(&[]);
    assert!(
        coloured.contains("\x1b[32m"),
        "strings are green: {coloured:?}"
    );
    let plain = shown(&[("NO_COLOR", "1")]);
    assert!(
        !plain.contains("\x1b[32m") && !plain.contains("\x1b[1;35m"),
        "NO_COLOR: {plain:?}"
    );
}
