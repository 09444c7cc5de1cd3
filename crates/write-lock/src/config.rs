//! Settings: one policy for the acquire timeout, the max hold and the stale age.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::lookup::{OwnerLookup, ProcLookup};
use crate::owners::OwnerRule;

/// By default, how long an acquire waits for a live holder: 60 s.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60);
/// By default, the longest a holder may keep the lock before its own watchdog revokes it: 5 min.
pub const DEFAULT_MAX_HOLD: Duration = Duration::from_secs(5 * 60);
/// By default, the age past which a record that cannot prove its owner alive is reported as
/// too old: 30 min.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// By default, holds longer than this log a warning when released: 10 s.
pub const DEFAULT_WARN_HOLD_AFTER: Duration = Duration::from_secs(10);

/// The environment variable that overrides the acquire timeout, in milliseconds.
pub const ENV_ACQUIRE_TIMEOUT_MS: &str = "SESSIONKIT_LOCK_ACQUIRE_TIMEOUT_MS";
/// The environment variable that overrides the stale age, in milliseconds.
pub const ENV_STALE_MS: &str = "SESSIONKIT_LOCK_STALE_MS";
/// The environment variable that overrides the max hold, in milliseconds.
pub const ENV_MAX_HOLD_MS: &str = "SESSIONKIT_LOCK_MAX_HOLD_MS";

/// The settings of a [`Locker`](crate::Locker), built with [`LockConfig::builder`].
///
/// # How the three times relate
///
/// - **max hold** bounds every hold. A holder's own watchdog revokes its guard once it has held
///   the lock this long, removes its lock file and makes its later writes fail. No other
///   process ever robs a live holder; this is the only way a hung holder loses the lock.
/// - **acquire timeout** bounds every wait. A waiter that must outlast any live holder sets it
///   at or above the max hold; the default (60 s) is shorter, so a caller facing a hung holder
///   gets a timeout error that names the holder and says whether it is past its max hold.
/// - **stale age** applies only to records that cannot prove their owner alive (older formats
///   and other programs): such a lock older than this is *reported* too old, never removed
///   for its age alone. It must be at least the max hold, or a legal hold would look stale.
///
/// Records of this crate are judged by the kernel: their owner holds an OS lock (`flock`) on
/// the lock file, which the kernel drops when the owner dies, however it dies.
#[derive(Clone)]
pub struct LockConfig {
    pub(crate) acquire_timeout: Duration,
    pub(crate) max_hold: Duration,
    pub(crate) stale_after: Duration,
    pub(crate) malformed_grace: Option<Duration>,
    pub(crate) poll_min: Duration,
    pub(crate) poll_max: Duration,
    pub(crate) label: Option<String>,
    pub(crate) warn_hold_after: Duration,
    pub(crate) sync_lock_file: bool,
    pub(crate) watchdog: bool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) lookup: Arc<dyn OwnerLookup>,
    pub(crate) ours: Option<OwnerRule>,
    pub(crate) foreign_owners_stale: bool,
}

impl fmt::Debug for LockConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockConfig")
            .field("acquire_timeout", &self.acquire_timeout)
            .field("max_hold", &self.max_hold)
            .field("stale_after", &self.stale_after)
            .field("malformed_grace", &self.malformed_grace())
            .field("poll", &(self.poll_min, self.poll_max))
            .field("label", &self.label)
            .field("warn_hold_after", &self.warn_hold_after)
            .field("sync_lock_file", &self.sync_lock_file)
            .field("watchdog", &self.watchdog)
            .field("ours", &self.ours)
            .field("foreign_owners_stale", &self.foreign_owners_stale)
            .finish_non_exhaustive()
    }
}

impl Default for LockConfig {
    fn default() -> Self {
        LockConfig {
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            max_hold: DEFAULT_MAX_HOLD,
            stale_after: DEFAULT_STALE_AFTER,
            malformed_grace: None,
            poll_min: Duration::from_millis(1),
            poll_max: Duration::from_millis(8),
            label: None,
            warn_hold_after: DEFAULT_WARN_HOLD_AFTER,
            sync_lock_file: false,
            watchdog: true,
            clock: Arc::new(SystemClock),
            lookup: Arc::new(ProcLookup),
            ours: None,
            foreign_owners_stale: false,
        }
    }
}

impl LockConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> LockConfigBuilder {
        LockConfigBuilder {
            config: LockConfig::default(),
            errors: Vec::new(),
            from_env: FromEnv::default(),
        }
    }

    /// How long an acquire waits for a live holder.
    pub fn acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }

    /// The longest a guard is held before its watchdog revokes it.
    pub fn max_hold(&self) -> Duration {
        self.max_hold
    }

    /// The age past which an unprovable record is reported too old.
    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    /// How long a lock file without a valid record is kept (its owner may be writing it).
    pub fn malformed_grace(&self) -> Duration {
        self.malformed_grace
            .unwrap_or(if self.acquire_timeout < Duration::from_secs(30) {
                Duration::from_secs(5)
            } else {
                Duration::from_secs(30)
            })
    }

    /// The holder label written into records.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The rule that says which live owners are ours, if one was set.
    pub fn ours(&self) -> Option<&OwnerRule> {
        self.ours.as_ref()
    }

    /// Whether a live owner that is not ours counts as stale.
    pub fn foreign_owners_stale(&self) -> bool {
        self.foreign_owners_stale
    }
}

/// Builds a [`LockConfig`]; every setter says its default.
#[derive(Debug)]
pub struct LockConfigBuilder {
    config: LockConfig,
    errors: Vec<Error>,
    from_env: FromEnv,
}

/// Which settings an environment variable gave last, so that an error about them names the
/// variable the user set rather than the field.
#[derive(Clone, Copy, Debug, Default)]
struct FromEnv {
    stale_after: bool,
    max_hold: bool,
}

impl LockConfigBuilder {
    /// How long an acquire waits for a live holder before it fails with a timeout.
    ///
    /// By default, 60 s ([`DEFAULT_ACQUIRE_TIMEOUT`]).
    pub fn acquire_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.config.acquire_timeout = timeout;
        self
    }

    /// The longest a guard may be held; past it, this process's watchdog revokes the guard.
    ///
    /// By default, 5 min ([`DEFAULT_MAX_HOLD`]).
    pub fn max_hold(&mut self, max_hold: Duration) -> &mut Self {
        if max_hold.is_zero() {
            self.errors
                .push(config_error("max_hold", "must be more than zero"));
        }
        self.config.max_hold = max_hold;
        self.from_env.max_hold = false;
        self
    }

    /// The age past which a lock whose owner cannot be proven alive is reported too old.
    ///
    /// By default, 30 min ([`DEFAULT_STALE_AFTER`]).
    pub fn stale_after(&mut self, stale_after: Duration) -> &mut Self {
        if stale_after.is_zero() {
            self.errors
                .push(config_error("stale_after", "must be more than zero"));
        }
        self.config.stale_after = stale_after;
        self.from_env.stale_after = false;
        self
    }

    /// How long a lock file without a valid record is left alone before it counts as stale.
    ///
    /// By default, 5 s when the acquire timeout is under 30 s, else 30 s (OpenClaw's rule).
    /// Observers (inspection, the sweeper) keep such a file at most 30 s whatever is set here,
    /// as OpenClaw's sweeper does; only an acquire waits out a longer grace.
    pub fn malformed_grace(&mut self, grace: Duration) -> &mut Self {
        self.config.malformed_grace = Some(grace);
        self
    }

    /// The range of pauses between attempts while another process holds the lock; the pause
    /// doubles from `min` to `max`. In-process waiters are woken by the release itself.
    ///
    /// By default, 1 ms to 8 ms.
    pub fn poll_interval(&mut self, min: Duration, max: Duration) -> &mut Self {
        if min.is_zero() || max < min {
            self.errors
                .push(config_error("poll_interval", "needs 0 < min <= max"));
        }
        self.config.poll_min = min;
        self.config.poll_max = max;
        self
    }

    /// A label written into every record this locker creates (a run id, say), shown by
    /// `sessionkit lock show` and in timeout errors.
    ///
    /// By default, none.
    pub fn label(&mut self, label: impl Into<String>) -> &mut Self {
        let label = label.into();
        self.config.label = (!label.is_empty()).then_some(label);
        self
    }

    /// Logs a `tracing` warning, "lock held for N ms", when a hold longer than this ends.
    ///
    /// By default, 10 s ([`DEFAULT_WARN_HOLD_AFTER`]).
    pub fn warn_hold_after(&mut self, after: Duration) -> &mut Self {
        self.config.warn_hold_after = after;
        self
    }

    /// Syncs each new lock file before it counts as held, so that after a power loss its
    /// record is readable rather than empty.
    ///
    /// By default, off: an empty lock file left by a power loss is judged malformed and removed
    /// after the grace period, and an acquire pays no fsync.
    pub fn sync_lock_file(&mut self, yes: bool) -> &mut Self {
        self.config.sync_lock_file = yes;
        self
    }

    /// Runs a watchdog thread that revokes guards held past their max hold.
    ///
    /// By default, on. Tests that drive the watchdog with a [`ManualClock`](crate::ManualClock)
    /// turn it off and call [`Locker::watchdog_pass`](crate::Locker::watchdog_pass).
    pub fn watchdog(&mut self, yes: bool) -> &mut Self {
        self.config.watchdog = yes;
        self
    }

    /// The clock for records, ages, holds and deadlines.
    ///
    /// By default, the system clock.
    pub fn clock(&mut self, clock: Arc<dyn Clock>) -> &mut Self {
        self.config.clock = clock;
        self
    }

    /// How other processes are looked up (alive? start time? command line?).
    ///
    /// By default, `/proc` ([`ProcLookup`]).
    pub fn lookup(&mut self, lookup: Arc<dyn OwnerLookup>) -> &mut Self {
        self.config.lookup = lookup;
        self
    }

    /// Which live owners count as ours, by their command line (see [`OwnerRule`]). It matters
    /// only for records without an OS-lock promise, and only with
    /// [`foreign_owners_stale`](LockConfigBuilder::foreign_owners_stale) on.
    ///
    /// By default, none: every owner counts as ours and no command line is ever read.
    pub fn ours(&mut self, rule: OwnerRule) -> &mut Self {
        self.config.ours = Some(rule);
        self
    }

    /// OpenClaw's non-owner rule: a lock whose record has no OS-lock promise and whose owner
    /// pid is alive, not recycled, not this process, and running a command line that is
    /// readable, not blank and not [ours](LockConfigBuilder::ours) is judged stale
    /// ([`StaleReason::ForeignOwner`](crate::StaleReason::ForeignOwner)): the pid was most
    /// likely reused by another program. It costs one command-line lookup per such owner. An
    /// unreadable command line keeps the lock.
    ///
    /// By default, off, because a wrong rule would rob live holders. Needs
    /// [`ours`](LockConfigBuilder::ours); [`build`](LockConfigBuilder::build) fails without it.
    pub fn foreign_owners_stale(&mut self, yes: bool) -> &mut Self {
        self.config.foreign_owners_stale = yes;
        self
    }

    /// Applies the `SESSIONKIT_LOCK_*` overrides from the process environment.
    ///
    /// Each value must be a positive whole number of milliseconds written in decimal digits;
    /// anything else is an error that names the variable. Unset variables change nothing.
    pub fn from_env(&mut self) -> &mut Self {
        self.apply_env(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Applies overrides read through `get` (for tests and embedding), as
    /// [`from_env`](LockConfigBuilder::from_env) does.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> &mut Self {
        for name in [ENV_ACQUIRE_TIMEOUT_MS, ENV_STALE_MS, ENV_MAX_HOLD_MS] {
            let Some(raw) = get(name) else { continue };
            match parse_env_ms(&raw) {
                Ok(value) => match name {
                    ENV_ACQUIRE_TIMEOUT_MS => self.config.acquire_timeout = value,
                    ENV_STALE_MS => {
                        self.config.stale_after = value;
                        self.from_env.stale_after = true;
                    }
                    _ => {
                        self.config.max_hold = value;
                        self.from_env.max_hold = true;
                    }
                },
                Err(reason) => self
                    .errors
                    .push(config_error(name, &format!("{reason} (got {raw:?})"))),
            }
        }
        self
    }

    /// Checks the settings and returns them.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for the first invalid setting: a zero max hold or stale age, a bad
    /// environment value, a stale age shorter than the max hold, or the foreign-owner rule
    /// without a rule for which owners are ours.
    pub fn build(&self) -> Result<LockConfig> {
        if let Some(first) = self.errors.first() {
            return Err(match first {
                Error::Config { name, reason } => config_error(name, reason),
                _ => config_error("lock", "invalid setting"),
            });
        }
        let c = &self.config;
        if c.foreign_owners_stale && c.ours.is_none() {
            return Err(config_error(
                "foreign_owners_stale",
                "needs a rule for which owners are ours (`ours`)",
            ));
        }
        if c.stale_after < c.max_hold {
            let env = self.from_env;
            // Name what the user set: a variable if one gave either value.
            let name = match (env.stale_after, env.max_hold) {
                (true, _) => ENV_STALE_MS,
                (false, true) => ENV_MAX_HOLD_MS,
                (false, false) => "stale_after",
            };
            let from = |yes: bool, var: &str| {
                if yes {
                    format!(", from {var}")
                } else {
                    String::new()
                }
            };
            return Err(config_error(
                name,
                &format!(
                    "the stale age ({} ms{}) is shorter than the max hold ({} ms{}), so a legal \
                     hold would look stale",
                    c.stale_after.as_millis(),
                    from(env.stale_after, ENV_STALE_MS),
                    c.max_hold.as_millis(),
                    from(env.max_hold, ENV_MAX_HOLD_MS),
                ),
            ));
        }
        Ok(c.clone())
    }
}

fn config_error(name: &str, reason: &str) -> Error {
    Error::Config {
        name: name.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Parses a `SESSIONKIT_LOCK_*_MS` value: decimal digits only, at least 1, at most 2^53 - 1
/// (JavaScript's safe integers, as OpenClaw accepts).
pub(crate) fn parse_env_ms(raw: &str) -> std::result::Result<Duration, &'static str> {
    let raw = raw.trim();
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must be a whole number of milliseconds in decimal digits");
    }
    let value: u64 = raw.parse().map_err(|_| "is too large")?;
    if value == 0 {
        return Err("must be more than zero");
    }
    if value > (1 << 53) - 1 {
        return Err("is too large (at most 2^53 - 1)");
    }
    Ok(Duration::from_millis(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2^53 - 1, the largest value the docs promise to accept, written out rather than taken
    /// from the parser.
    const MAX_MS: u64 = 9_007_199_254_740_991;

    /// What the documented rule says `raw` parses to: trimmed decimal digits naming 1 to
    /// 2^53 - 1 milliseconds, read as a wider integer so no overflow can hide.
    fn model(raw: &str) -> Option<Duration> {
        let digits = raw.trim();
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let significant = digits.trim_start_matches('0');
        if significant.len() > 30 {
            return None;
        }
        let value: u128 = significant.parse().unwrap_or(0);
        (1..=u128::from(MAX_MS))
            .contains(&value)
            .then(|| Duration::from_millis(value as u64))
    }

    /// Applies `raw` to the variable `name` and returns the builder, so a test can see both
    /// the value it set and the errors it recorded.
    fn apply(name: &str, raw: &str) -> LockConfigBuilder {
        let mut builder = LockConfig::builder();
        builder.apply_env(|n| (n == name).then(|| raw.to_owned()));
        builder
    }

    fn variable() -> impl Strategy<Value = &'static str> {
        proptest::sample::select(vec![ENV_ACQUIRE_TIMEOUT_MS, ENV_STALE_MS, ENV_MAX_HOLD_MS])
    }

    /// Whitespace `trim` removes, including a non-ASCII space.
    fn blank() -> impl Strategy<Value = &'static str> {
        proptest::sample::select(vec!["", " ", "\t", "\n", " \r\n", "\u{3000}"])
    }

    proptest! {
        #[test]
        fn every_value_in_range_round_trips(
            ms in prop_oneof![Just(1), Just(MAX_MS), 1..=MAX_MS, 1_u64..100_000],
            zeros in 0_usize..4,
            before in blank(),
            after in blank(),
        ) {
            let raw = format!("{before}{}{ms}{after}", "0".repeat(zeros));
            prop_assert_eq!(parse_env_ms(&raw), Ok(Duration::from_millis(ms)), "{:?}", raw);
        }

        #[test]
        fn values_outside_the_range_are_refused_by_variable_and_value(
            name in variable(),
            raw in prop_oneof![
                Just("0".to_owned()),
                Just("000".to_owned()),
                Just((MAX_MS + 1).to_string()),
                Just(u64::MAX.to_string()),
                (MAX_MS + 1..=u64::MAX).prop_map(|v| v.to_string()),
                // Past u64 altogether.
                "[1-9][0-9]{20,40}",
            ],
        ) {
            prop_assert!(parse_env_ms(&raw).is_err(), "{:?}", raw);
            let err = apply(name, &raw).build().expect_err(&raw).to_string();
            prop_assert!(err.contains(name), "{}", err);
            prop_assert!(err.contains(&format!("{raw:?}")), "{}", err);
        }

        #[test]
        fn any_text_follows_the_digits_only_rule(
            name in variable(),
            raw in prop_oneof![
                any::<String>(),
                // Near misses: signs, exponents, separators, hex and non-ASCII digits.
                "[ \t]{0,2}[-+]?[0-9]{0,6}([.e_,xX]|\u{0663})?[0-9a-f]{0,6}[ \t]{0,2}",
            ],
        ) {
            let expected = model(&raw);
            prop_assert_eq!(parse_env_ms(&raw).ok(), expected, "{:?}", raw);
            let builder = apply(name, &raw);
            match expected {
                Some(value) => {
                    prop_assert!(builder.errors.is_empty(), "{:?}", builder.errors);
                    let set = match name {
                        ENV_ACQUIRE_TIMEOUT_MS => builder.config.acquire_timeout,
                        ENV_STALE_MS => builder.config.stale_after,
                        _ => builder.config.max_hold,
                    };
                    prop_assert_eq!(set, value);
                }
                None => {
                    let err = builder.build().expect_err(&raw).to_string();
                    prop_assert!(err.contains(name), "{}", err);
                    prop_assert!(err.contains(&format!("{raw:?}")), "{}", err);
                }
            }
        }
    }

    /// A stale age below the max hold is reported under the variable that set either, so a
    /// user sees what to change; set in code, under the field.
    #[test]
    fn a_stale_age_below_the_max_hold_names_what_set_it() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let short = LockConfig::builder()
            .apply_env(env(&[(ENV_STALE_MS, "10")]))
            .build()
            .unwrap_err()
            .to_string();
        assert!(short.contains(ENV_STALE_MS), "{short}");
        assert!(
            short.contains("(10 ms, from SESSIONKIT_LOCK_STALE_MS)"),
            "{short}"
        );
        let long = LockConfig::builder()
            .apply_env(env(&[(ENV_MAX_HOLD_MS, "999999999")]))
            .build()
            .unwrap_err()
            .to_string();
        assert!(long.contains(ENV_MAX_HOLD_MS), "{long}");
        assert!(!long.contains(ENV_STALE_MS), "{long}");
        let in_code = LockConfig::builder()
            .apply_env(env(&[(ENV_STALE_MS, "10")]))
            .stale_after(Duration::from_millis(20))
            .build()
            .unwrap_err()
            .to_string();
        assert!(in_code.contains("`stale_after`"), "{in_code}");
        assert!(!in_code.contains("SESSIONKIT_LOCK"), "{in_code}");
    }

    #[test]
    fn env_values_follow_the_digits_only_rule() {
        assert_eq!(parse_env_ms("60000"), Ok(Duration::from_millis(60000)));
        assert_eq!(parse_env_ms(" 15 "), Ok(Duration::from_millis(15)));
        for bad in [
            "",
            "0",
            "1e3",
            "0x1000",
            "-5",
            "1.5",
            "Infinity",
            "9007199254740992",
            "99999999999999999999999",
        ] {
            assert!(parse_env_ms(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_env_ms("9007199254740991"),
            Ok(Duration::from_millis((1 << 53) - 1))
        );
    }
}
