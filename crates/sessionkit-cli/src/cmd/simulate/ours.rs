//! The workload on sessionkit: each run through a `StateDir`, as a gateway would do it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sessionkit::StateDir;
use sessionkit::store::{Activity, Entry, Patch};

use super::plan::{Fire, Plan, main_key, main_session};
use super::report::{Event, RunOutcome, WorkerSummary};
use super::{Sink, now_ms};

/// Runs `fires` on the current runtime, each at its time after `start`, beside a 1 ms
/// ticker; first closes the `interrupted` runs a killed predecessor left. Returns what the
/// process saw besides its runs.
pub(crate) async fn run_fires(
    state: Arc<StateDir>,
    plan: Arc<Plan>,
    fires: Vec<Fire>,
    interrupted: Vec<Fire>,
    start: Instant,
    sink: Arc<Sink>,
    done: Arc<AtomicUsize>,
) -> WorkerSummary {
    let hook_sink = Arc::clone(&sink);
    state
        .locker()
        .set_removal_hook(move |_| hook_sink.emit(Event::StaleTaken));
    // The sweep's figures go out as soon as it is done, so a kill after it cannot lose them.
    let sweep = {
        let (state, sink) = (Arc::clone(&state), Arc::clone(&sink));
        tokio::spawn(async move {
            let status = state
                .wait_startup_sweep_async(Duration::from_secs(600))
                .await;
            if let Some(r) = status.report() {
                sink.emit(Event::Swept {
                    removed: r.totals.removed,
                    lookups: r.lookups,
                });
            }
        })
    };

    let stop = Arc::new(AtomicBool::new(false));
    let ticker = tokio::spawn(ticker(Arc::clone(&stop)));

    for fire in interrupted {
        recover(&state, &fire, &sink).await;
    }

    super::schedule(fires, start, &sink, &done, |fire, sink| {
        let (state, plan) = (Arc::clone(&state), Arc::clone(&plan));
        async move { run_one(&state, &plan, &fire, &sink).await }
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    let ticker_max_us = ticker.await.unwrap_or(u64::MAX);
    let _ = sweep.await;
    WorkerSummary {
        ticker_max_us,
        startup_blocked_us: 0,
    }
}

/// A 1 ms ticker on the runtime; returns its worst lateness in microseconds.
pub(crate) async fn ticker(stop: Arc<AtomicBool>) -> u64 {
    let period = Duration::from_millis(1);
    let mut worst = Duration::ZERO;
    let mut next = Instant::now() + period;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep_until(next.into()).await;
        let now = Instant::now();
        worst = worst.max(now.saturating_duration_since(next));
        next += period;
        if next < now {
            next = now + period;
        }
    }
    u64::try_from(worst.as_micros()).unwrap_or(u64::MAX)
}

fn failed(mut outcome: RunOutcome, step: &str, e: impl std::error::Error) -> RunOutcome {
    // The whole chain: "could not append" says little without "fenced: revoked".
    let mut why = format!("{step}: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        why.push_str(&format!(": {s}"));
        source = s.source();
    }
    outcome.failed = Some(why);
    outcome
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One isolated cron run: a new session in the registry, its transcript under the session's
/// lock, the lock suspended around the model call, a patch when done, and an announcement in
/// the agent's main session (whose lock all the agent's runs share).
async fn run_one(state: &StateDir, plan: &Plan, fire: &Fire, sink: &Sink) -> RunOutcome {
    let key = fire.key();
    let sid = fire.session_id();
    let mut outcome = RunOutcome {
        key: key.clone(),
        hung: fire.hang,
        ..RunOutcome::default()
    };
    let store = state.store();
    // A running session is never evicted, in this process (the mark) or any other (status).
    let _active = store.mark_active(key.clone());
    let entry = format!(
        r#"{{"sessionId":"{sid}","updatedAt":{},"status":"running","label":"cron {} of agent {}","simVersion":1}}"#,
        now_ms(),
        fire.job,
        fire.agent
    );
    let entry = match Entry::parse(&entry) {
        Ok(e) => e,
        Err(e) => return failed(outcome, "entry", e),
    };
    if let Err(e) = store.upsert_async(key.clone(), entry).await {
        return failed(outcome, "upsert", e);
    }
    sink.emit(Event::Acked {
        key: key.clone(),
        version: 1,
    });

    let asked = Instant::now();
    let transcript = state.transcript_async(&sid).await;
    // A wait that timed out is a wait too.
    outcome.waits_us.push(micros(asked.elapsed()));
    let mut transcript = match transcript {
        Ok(t) => t,
        Err(e) => return failed(outcome, "lock transcript", e),
    };
    let held = Instant::now();
    for record in [
        r#"{"role":"user","text":"run the scheduled job"}"#,
        r#"{"role":"tool","text":"job input read"}"#,
    ] {
        if let Err(e) = transcript.append_async(record).await {
            return failed(outcome, "append", e);
        }
    }
    let suspended = match transcript.suspend_async().await {
        Ok(s) => s,
        Err(e) => return failed(outcome, "suspend", e),
    };
    outcome.longest_hold_us = micros(held.elapsed());
    // The model call, without the lock.
    tokio::time::sleep(Duration::from_millis(fire.model_ms)).await;
    let asked = Instant::now();
    let transcript = state.resume_async(suspended).await;
    outcome.waits_us.push(micros(asked.elapsed()));
    let mut transcript = match transcript {
        Ok(t) => t,
        Err(e) => {
            outcome.takeover = matches!(&e, sessionkit::service::Error::Store { source, .. }
                if matches!(&**source, sessionkit::store::Error::Lock { source, .. } if source.is_takeover()));
            return failed(outcome, "resume", e);
        }
    };
    let held = Instant::now();
    if let Err(e) = transcript
        .append_async(r#"{"role":"assistant","text":"job done"}"#)
        .await
    {
        return failed(outcome, "append", e);
    }
    if let Err(e) = transcript.release_async().await {
        return failed(outcome, "release", e);
    }
    outcome.longest_hold_us = outcome.longest_hold_us.max(micros(held.elapsed()));

    let patch = format!(
        r#"{{"status":"done","simVersion":2,"outputTokens":{}}}"#,
        fire.model_ms * 40
    );
    let patch = match Patch::parse(&patch) {
        Ok(p) => p,
        Err(e) => return failed(outcome, "patch", e),
    };
    if let Err(e) = store
        .patch_async(key.clone(), patch, Activity::Advance)
        .await
    {
        return failed(outcome, "patch", e);
    }
    sink.emit(Event::Acked {
        key: key.clone(),
        version: 2,
    });

    // The announcement, under the agent's main-session lock.
    let asked = Instant::now();
    let main = state.transcript_async(&main_session(fire.agent)).await;
    outcome.waits_us.push(micros(asked.elapsed()));
    let mut main = match main {
        Ok(t) => t,
        Err(e) => return failed(outcome, "lock main session", e),
    };
    let held = Instant::now();
    let note = format!(r#"{{"role":"system","text":"cron run {key} finished"}}"#);
    if fire.hang {
        // A hung holder: it never releases. The watchdog must revoke the hold at the max
        // hold, and the late write must be refused.
        let revocation = main.guard().map(|g| g.revocation());
        if let Some(revocation) = &revocation {
            tokio::select! {
                _ = revocation.revoked() => {}
                () = tokio::time::sleep(plan.hang()) => {}
            }
        }
        outcome.longest_hold_us = outcome.longest_hold_us.max(micros(held.elapsed()));
        tokio::time::sleep(plan.max_hold()).await;
        let refused = main.append_async(note).await.is_err();
        outcome.revoked = refused && revocation.is_some_and(|r| r.is_revoked());
        outcome.wrote_after_losing_lock = !refused;
        // Released on a blocking thread, as every file step of this design; the release of a
        // revoked hold fails, which is the expected outcome here.
        let _ = main.release_async().await;
    } else {
        if let Err(e) = main.append_async(note).await {
            return failed(outcome, "announce", e);
        }
        if let Err(e) = main.release_async().await {
            return failed(outcome, "release main session", e);
        }
        outcome.longest_hold_us = outcome.longest_hold_us.max(micros(held.elapsed()));
    }
    let touch = store.touch_async(main_key(fire.agent)).await;
    if let Err(e) = touch {
        return failed(outcome, "touch main session", e);
    }
    outcome
}

/// Closes a run a killed worker left: cuts its transcript's torn tail (taking the lock,
/// which the dead owner's kernel-released OS lock lets us take at once) and marks its entry
/// `killed`, as a restarted gateway does with interrupted runs.
async fn recover(state: &StateDir, fire: &Fire, sink: &Sink) {
    let key = fire.key();
    let Ok(Some(_)) = state.store().get_async(key.clone()).await else {
        // Killed before its upsert: nothing to close.
        sink.emit(Event::Recovered { key, repaired: 0 });
        return;
    };
    let repaired = match state.transcript_async(&fire.session_id()).await {
        Ok(t) => {
            let repaired = t.repaired_bytes().unwrap_or(0);
            let _ = t.release_async().await;
            repaired
        }
        Err(_) => return,
    };
    let Ok(patch) = Patch::parse(r#"{"status":"killed"}"#) else {
        return;
    };
    if state
        .store()
        .patch_async(key.clone(), patch, Activity::Preserve)
        .await
        .is_ok()
    {
        sink.emit(Event::Recovered { key, repaired });
    }
}
