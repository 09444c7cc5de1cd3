//! Settings: documented defaults, environment overrides that name the variable, coherence.

use std::time::Duration;

use sessionkit_write_lock::{ENV_ACQUIRE_TIMEOUT_MS, ENV_MAX_HOLD_MS, ENV_STALE_MS, LockConfig};

#[test]
fn defaults_follow_openclaw() {
    let c = LockConfig::builder().build().unwrap();
    assert_eq!(c.acquire_timeout(), Duration::from_secs(60));
    assert_eq!(c.max_hold(), Duration::from_secs(300));
    assert_eq!(c.stale_after(), Duration::from_secs(1800));
    assert_eq!(c.malformed_grace(), Duration::from_secs(30));
    let short = LockConfig::builder()
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert_eq!(short.malformed_grace(), Duration::from_secs(5));
}

#[test]
fn environment_overrides_apply() {
    let c = LockConfig::builder()
        .apply_env(|name| match name {
            ENV_ACQUIRE_TIMEOUT_MS => Some("1500".into()),
            ENV_STALE_MS => Some("600000".into()),
            ENV_MAX_HOLD_MS => Some("120000".into()),
            _ => None,
        })
        .build()
        .unwrap();
    assert_eq!(c.acquire_timeout(), Duration::from_millis(1500));
    assert_eq!(c.stale_after(), Duration::from_secs(600));
    assert_eq!(c.max_hold(), Duration::from_secs(120));
}

#[test]
fn an_invalid_override_is_an_error_naming_the_variable() {
    // OpenClaw silently ignores `1e3`, `0x1000` and 2^53 + 1; we refuse them.
    for bad in ["1e3", "0x1000", "9007199254740993", "0", "-1", "soon", ""] {
        let err = LockConfig::builder()
            .apply_env(|name| (name == ENV_MAX_HOLD_MS).then(|| bad.to_owned()))
            .build()
            .unwrap_err();
        assert!(err.is_config(), "{bad}: {err}");
        assert!(err.to_string().contains(ENV_MAX_HOLD_MS), "{bad}: {err}");
    }
}

#[test]
fn a_stale_age_below_the_max_hold_is_refused() {
    let err = LockConfig::builder()
        .max_hold(Duration::from_secs(600))
        .stale_after(Duration::from_secs(60))
        .build()
        .unwrap_err();
    assert!(
        err.is_config() && err.to_string().contains("legal hold would look stale"),
        "{err}"
    );
    assert!(
        LockConfig::builder()
            .max_hold(Duration::ZERO)
            .build()
            .unwrap_err()
            .is_config()
    );
    assert!(
        LockConfig::builder()
            .poll_interval(Duration::from_millis(5), Duration::from_millis(1))
            .build()
            .unwrap_err()
            .is_config()
    );
}
