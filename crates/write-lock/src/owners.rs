//! Which live owners count as ours: the rule behind the optional foreign-owner judgement.
//!
//! A lock whose record promises an OS lock is judged by the kernel, and its owner is ours by
//! definition. A lock without that promise (older formats, other programs) names only a pid;
//! when that pid is alive, its command line is the one hint left that the pid now belongs to
//! some other program. [`OwnerRule`] says which command lines are ours.

use std::fmt;
use std::sync::Arc;

/// A predicate over an owner's command line.
type Predicate = Arc<dyn Fn(&[String]) -> bool + Send + Sync>;

/// Decides whether a live process, by its command line, is one of ours.
///
/// It is used only when [`LockConfigBuilder::foreign_owners_stale`] is on: a live owner (of a
/// record without an OS-lock promise) whose command line is readable, not blank and not ours
/// is then judged stale with [`StaleReason::ForeignOwner`](crate::StaleReason::ForeignOwner).
/// An unreadable command line means "unknown", and the lock is kept.
///
/// [`LockConfigBuilder::foreign_owners_stale`]: crate::LockConfigBuilder::foreign_owners_stale
#[derive(Clone)]
pub struct OwnerRule {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Programs(Vec<String>),
    OpenClaw,
    Predicate(Predicate),
}

impl OwnerRule {
    /// Ours if any word of the command line names one of `names`: its last path component,
    /// compared without case, is the name itself or the name plus `.exe`, `.cmd`, `.bat`,
    /// `.js`, `.mjs` or `.cjs`. So `programs(["gateway"])` matches `/usr/bin/gateway run`,
    /// `C:\bin\Gateway.exe` and `node /srv/gateway.mjs`, but not `python worker.py`.
    ///
    /// Arguments are also split at whitespace, because a process that rewrites its title
    /// shows its whole command line as one argument.
    pub fn programs<I, S>(names: I) -> OwnerRule
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        OwnerRule {
            kind: Kind::Programs(
                names
                    .into_iter()
                    .map(|n| n.as_ref().trim().to_lowercase())
                    .filter(|n| !n.is_empty())
                    .collect(),
            ),
        }
    }

    /// OpenClaw's own rule, for stores shared with OpenClaw processes. Ours if, after
    /// trimming, turning `\` into `/` and lowercasing:
    /// - the executable (minus `.exe`, `.cmd`, `.bat`) is `openclaw`, `*/openclaw` or
    ///   `*/openclaw-gateway`; or
    /// - any argument is `openclaw`, `*/openclaw`, `openclaw.mjs` or `*/openclaw.mjs`; or
    /// - an argument ends in `dist/index.js`, `dist/entry.js`, `scripts/run-node.mjs`,
    ///   `src/entry.ts` or `src/index.ts`, and some argument is `gateway` or `agent`.
    pub fn openclaw() -> OwnerRule {
        OwnerRule {
            kind: Kind::OpenClaw,
        }
    }

    /// Ours if `predicate` says so; it gets the command line, one argument per item.
    pub fn predicate(predicate: impl Fn(&[String]) -> bool + Send + Sync + 'static) -> OwnerRule {
        OwnerRule {
            kind: Kind::Predicate(Arc::new(predicate)),
        }
    }

    /// Whether a process with this command line is ours.
    pub fn is_ours(&self, argv: &[String]) -> bool {
        match &self.kind {
            Kind::Programs(names) => words(argv).any(|word| {
                let base = basename(&word);
                names.iter().any(|name| {
                    base.strip_prefix(name.as_str()).is_some_and(|rest| {
                        matches!(
                            rest,
                            "" | ".exe" | ".cmd" | ".bat" | ".js" | ".mjs" | ".cjs"
                        )
                    })
                })
            }),
            Kind::OpenClaw => is_openclaw(argv),
            Kind::Predicate(predicate) => predicate(argv),
        }
    }
}

impl fmt::Debug for OwnerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Programs(names) => f.debug_tuple("OwnerRule::programs").field(names).finish(),
            Kind::OpenClaw => f.write_str("OwnerRule::openclaw"),
            Kind::Predicate(_) => f.write_str("OwnerRule::predicate(..)"),
        }
    }
}

/// Every word of a command line, normalised: trimmed, `\` as `/`, lowercase.
fn words(argv: &[String]) -> impl Iterator<Item = String> + '_ {
    argv.iter()
        .flat_map(|arg| arg.split_whitespace())
        .map(|word| word.replace('\\', "/").to_lowercase())
}

fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

fn is_openclaw(argv: &[String]) -> bool {
    let args: Vec<String> = argv
        .iter()
        .map(|a| a.trim().replace('\\', "/").to_lowercase())
        .filter(|a| !a.is_empty())
        .collect();
    let Some(exe) = args.first() else {
        return false;
    };
    let exe = [".exe", ".cmd", ".bat"]
        .iter()
        .find_map(|ext| exe.strip_suffix(ext))
        .unwrap_or(exe);
    if exe == "openclaw" || exe.ends_with("/openclaw") || exe.ends_with("/openclaw-gateway") {
        return true;
    }
    let rest = &args[1..];
    if rest.iter().any(|a| {
        a == "openclaw"
            || a.ends_with("/openclaw")
            || a == "openclaw.mjs"
            || a.ends_with("/openclaw.mjs")
    }) {
        return true;
    }
    const ENTRIES: [&str; 5] = [
        "dist/index.js",
        "dist/entry.js",
        "scripts/run-node.mjs",
        "src/entry.ts",
        "src/index.ts",
    ];
    rest.iter().any(|a| ENTRIES.iter().any(|e| a.ends_with(e)))
        && rest.iter().any(|a| a == "gateway" || a == "agent")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn programs_match_basenames_with_known_extensions_only() {
        let rule = OwnerRule::programs(["Gateway"]);
        assert!(rule.is_ours(&argv("/usr/bin/gateway run")));
        assert!(rule.is_ours(&argv(r"C:\bin\GATEWAY.EXE")));
        assert!(rule.is_ours(&argv("node /srv/gateway.mjs")));
        assert!(rule.is_ours(&["node /srv/gateway.mjs --port 1".to_owned()]));
        assert!(!rule.is_ours(&argv("python worker.py")));
        assert!(!rule.is_ours(&argv("/usr/bin/gateway2")));
        assert!(!rule.is_ours(&argv("/usr/bin/gateway.py")));
        assert!(!OwnerRule::programs([" "]).is_ours(&argv("anything at all")));
    }

    #[test]
    fn openclaw_rule_follows_the_reference_checklist() {
        let rule = OwnerRule::openclaw();
        for ours in [
            "node /opt/lib/openclaw.mjs agent",
            "node dist/index.js gateway run",
            "/usr/local/bin/openclaw gateway",
            r"C:\Tools\OpenClaw.cmd",
            "/opt/openclaw-gateway",
            "node /usr/lib/node_modules/openclaw",
        ] {
            assert!(rule.is_ours(&argv(ours)), "{ours}");
        }
        for foreign in [
            "python worker.py",
            "node /srv/app/dist/index.js",
            "openclaw-gateway",
            "",
        ] {
            assert!(!rule.is_ours(&argv(foreign)), "{foreign}");
        }
    }

    #[test]
    fn predicate_gets_the_arguments() {
        let rule = OwnerRule::predicate(|argv| argv.len() == 2 && argv[1] == "--worker");
        assert!(rule.is_ours(&argv("bin --worker")));
        assert!(!rule.is_ours(&argv("bin")));
    }
}
