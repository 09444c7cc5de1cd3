//! A small agent gateway on `sessionkit`: run it with `cargo run -p sessionkit --example gateway`.
//!
//! It opens a state directory the way a service does at start-up (the stale-lock sweep runs in
//! the background while it already serves), then handles a few agent runs at once. Each run
//! creates a session in the registry, appends its transcript under the session's lock, releases
//! the lock around a slow model call, patches the entry when done, and ends with a cleanup that
//! abandons whatever its unit of work still holds. One run "forgets" to release its lock, and
//! the cleanup frees it.

use std::time::Duration;

use sessionkit::StateDir;
use sessionkit::store::{Activity, Entry, Patch, Transcript};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    // The directory named on the command line is kept; a temporary one is removed at the end.
    let given = std::env::args_os().nth(1).map(std::path::PathBuf::from);
    let dir = given
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("sk-gateway-{}", std::process::id())));

    // The defaults plus any SESSIONKIT_* variables; the startup sweep does not delay this.
    let state = std::sync::Arc::new(StateDir::builder().from_env().open_async(&dir).await?);
    println!("state directory: {}", dir.display());

    let mut runs = tokio::task::JoinSet::new();
    for n in 0..4 {
        let state = std::sync::Arc::clone(&state);
        runs.spawn(async move { handle_run(&state, n).await });
    }
    let mut leaked = Vec::new();
    while let Some(done) = runs.join_next().await {
        leaked.extend(done??);
    }

    // Whatever the runs left held is abandoned here, as a gateway does when a job ends.
    let cleanup = state.cleanup();
    println!("cleanup abandoned {} held lock(s)", cleanup.abandoned.len());
    // The leaked handle is fenced now: its writes fail instead of landing behind a new holder.
    for mut transcript in leaked {
        let fenced = transcript.append_async("{}").await.is_err();
        println!("a write through the abandoned handle was refused: {fenced}");
    }

    let status = state
        .wait_startup_sweep_async(Duration::from_secs(10))
        .await;
    if let Some(report) = status.report() {
        println!(
            "startup sweep: scanned {}, removed {}",
            report.totals.scanned, report.totals.removed
        );
    }
    println!("registry entries: {}", state.store().count_async().await?);
    // Waits for the registry's writer and any background pass, so that nothing writes into
    // the directory once it returns (a plain drop does not wait).
    let state = std::sync::Arc::into_inner(state).ok_or("a handle of the state is still open")?;
    state.close_async().await?;
    if given.is_none() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

/// One agent run: a new session, transcript appends, a slow call without the lock, a patch.
/// Returns the transcript if the run "forgot" to release it.
async fn handle_run(state: &StateDir, n: u32) -> Result<Option<Transcript>> {
    let key = format!("agent:main:run:{n}");
    let session_id = format!("run-{}-{n}", std::process::id());

    // A running session is never evicted by maintenance while the mark lives.
    let _active = state.store().mark_active(key.clone());
    let entry = Entry::parse(&format!(
        r#"{{"sessionId":"{session_id}","status":"running"}}"#
    ))?;
    state.store().upsert_async(key.clone(), entry).await?;

    let mut transcript = state.transcript_async(&session_id).await?;
    transcript
        .append_async(format!(r#"{{"role":"user","text":"task {n}"}}"#))
        .await?;

    // Never hold a session lock across a model call: suspend, call, resume (which checks that
    // nobody else wrote meanwhile).
    let suspended = transcript.suspend_async().await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut transcript = state.resume_async(suspended).await?;
    transcript
        .append_async(format!(r#"{{"role":"assistant","text":"done {n}"}}"#))
        .await?;

    let patch = Patch::parse(r#"{"status":"done"}"#)?;
    state
        .store()
        .patch_async(key, patch, Activity::Advance)
        .await?;
    if n == 3 {
        // This run keeps its transcript locked; the gateway's cleanup abandons the lock.
        return Ok(Some(transcript));
    }
    transcript.release_async().await?;
    Ok(None)
}
