//! Who a run is, as it names itself in the marks it leaves (a journal's lock file, the
//! annotation on a Service it quiesced), and whether the run a mark names still lives.

use serde_json::{Value, json};

/// This machine's host name (`unknown` when the kernel does not say).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .filter(|name| !name.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The holder record of this process for run `run` of `script`.
pub fn this_run(run: &str, script: &str, journal: Option<&str>) -> Value {
    json!({
        "run": run,
        "script": script,
        "host": hostname(),
        "pid": std::process::id(),
        "journal": journal,
        "started_at": jiff::Timestamp::now().to_string(),
    })
}

/// How a holder record relates to this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// The same run (this process, or an earlier attempt of the same journal's run).
    Mine,
    /// Another run on this machine whose process still lives.
    Alive,
    /// Another run on this machine whose process is gone.
    Dead,
    /// A run on another machine: whether it lives cannot be told from here.
    Elsewhere,
}

impl Standing {
    /// The word scripts see.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Mine => "mine",
            Standing::Alive => "alive",
            Standing::Dead => "dead",
            Standing::Elsewhere => "elsewhere",
        }
    }
}

/// Whether process `pid` exists on this machine.
fn pid_alive(pid: u64) -> bool {
    std::path::Path::new("/proc").join(pid.to_string()).exists()
}

/// Classifies `holder` (a record made by [`this_run`]) against run `run` of this process.
pub fn standing(holder: &Value, run: &str) -> Standing {
    if holder["run"].as_str() == Some(run) && !run.is_empty() {
        return Standing::Mine;
    }
    if holder["host"].as_str() != Some(hostname().as_str()) {
        return Standing::Elsewhere;
    }
    match holder["pid"].as_u64() {
        Some(pid) if pid == u64::from(std::process::id()) => Standing::Mine,
        Some(pid) if pid_alive(pid) => Standing::Alive,
        _ => Standing::Dead,
    }
}

/// A holder record in a few words, for errors: `run R (script migrate, pid 12 on host, journal J, since T)`.
pub fn describe(holder: &Value) -> String {
    let field = |key: &str| match &holder[key] {
        Value::Null => "?".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    format!(
        "run {} (script {}, pid {} on {}, journal {}, since {})",
        field("run"),
        field("script"),
        field("pid"),
        field("host"),
        field("journal"),
        field("started_at")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_is_mine_alive_dead_or_elsewhere() {
        let mine = this_run("r1", "migrate", None);
        assert_eq!(standing(&mine, "r1"), Standing::Mine);
        // This process under another run id is still this process.
        assert_eq!(standing(&mine, "r2"), Standing::Mine);
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        let mut alive = mine.clone();
        alive["pid"] = json!(child.id());
        assert_eq!(standing(&alive, "r2"), Standing::Alive);
        child.kill().expect("kill");
        child.wait().expect("reaped");
        assert_eq!(standing(&alive, "r2"), Standing::Dead);
        let mut elsewhere = alive;
        elsewhere["host"] = json!("some-other-machine");
        assert_eq!(standing(&elsewhere, "r2"), Standing::Elsewhere);
        assert!(describe(&elsewhere).contains("on some-other-machine"));
    }
}
