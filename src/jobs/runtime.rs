//! The background runtime: the threads that run the job workers and the
//! briefing scheduler, apart from the threads that accept Slack's requests.
//!
//! Slack waits for an acknowledgement (3 s at most, and every millisecond
//! of it is a user's wait); the work behind an event waits in the durable
//! outbox and can run a moment later. So the two get their own tokio
//! runtimes, and the background one's threads run at a lower OS priority
//! (`JOB_WORKER_NICE`, default [`BACKGROUND_NICE`]). When the machine is busy, the kernel gives the
//! CPU to the acknowledgement path first (the HTTP server, Socket Mode and
//! the ingest committer stay on the main runtime); when it is not, the
//! workers get every idle cycle, as before. The queue's depth and age stay
//! visible in `/readyz` and `/metrics` while the workers lag.
//!
//! On a system where the priority cannot be changed (not Linux, or a
//! sandbox refusing `setpriority`), the threads run at normal priority and
//! one warning says so.

use std::sync::atomic::{AtomicBool, Ordering};

/// The default nice offset of the background threads: enough that a busy
/// acknowledgement path wins most of the CPU (CFS weight 110 against 1024 at
/// nice 0), not so much that the workers stall on a busy machine.
pub const BACKGROUND_NICE: i32 = 10;

/// The default number of background threads: half the CPUs (at least one),
/// so the acknowledgement path's runtime keeps the other half. On two CPUs
/// that is one thread: the workers' tasks wait on the network almost all
/// the time, and with one thread a task woken by its socket runs where the
/// socket was polled, without waking a second thread to steal it (the
/// briefing benchmark measured 1.32 → 1.21 ms of CPU per briefing).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().div_ceil(2)).max(1)
}

thread_local! {
    /// A background thread's logging dispatcher, for as long as it runs.
    static THREAD_DISPATCH: std::cell::RefCell<Option<tracing::dispatcher::DefaultGuard>> =
        const { std::cell::RefCell::new(None) };
}

/// A runtime for background work. Dropping it stops it without waiting
/// (its tasks are expected to have been drained already), so it may be
/// dropped anywhere, including inside another runtime.
pub struct BackgroundRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl BackgroundRuntime {
    /// Starts `threads` worker threads, each `nice` (0–19) below the
    /// caller's priority.
    ///
    /// The threads log where the caller logs: its current `tracing`
    /// dispatcher (the global one in production, a test's own otherwise)
    /// becomes theirs.
    pub fn start(threads: usize, nice: i32) -> std::io::Result<Self> {
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("robeing-background")
            .on_thread_start(move || {
                THREAD_DISPATCH.with(|slot| *slot.borrow_mut() = Some(tracing::dispatcher::set_default(&dispatch)));
                if nice > 0 {
                    lower_this_threads_priority(nice)
                }
            })
            .on_thread_stop(|| THREAD_DISPATCH.with(|slot| drop(slot.borrow_mut().take())))
            .enable_all()
            .build()?;
        Ok(Self { runtime: Some(runtime) })
    }

    /// A handle to spawn background tasks on.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime.as_ref().expect("the runtime lives until drop").handle()
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The nice value of the calling thread (Linux keeps one per thread).
#[cfg(target_os = "linux")]
pub fn current_thread_nice() -> std::io::Result<i32> {
    // SAFETY: getpriority has no memory effects; errno is cleared first
    // because -1 is also a valid nice value.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t);
        let errno = *libc::__errno_location();
        if nice == -1 && errno != 0 { Err(std::io::Error::from_raw_os_error(errno)) } else { Ok(nice) }
    }
}

#[cfg(target_os = "linux")]
fn lower_this_threads_priority(by: i32) {
    // Raising one's own nice value needs no privilege. Relative to the
    // current value, so a process started under `nice` keeps its offset.
    let result = current_thread_nice().and_then(|nice| {
        let target = (nice + by).min(19);
        // SAFETY: setpriority on this thread's own id; no memory effects.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, target) };
        if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
    });
    if let Err(e) = result {
        warn_once(&e);
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority(_by: i32) {
    warn_once(&std::io::Error::other("per-thread priorities are only set on Linux"));
}

fn warn_once(error: &std::io::Error) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            error = %error,
            "could not lower the priority of the background threads; job workers compete with acknowledgements for the CPU"
        );
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn background_threads_run_at_a_lower_priority_than_the_caller() {
        let caller = current_thread_nice().expect("reads its own priority");
        let background = BackgroundRuntime::start(1, BACKGROUND_NICE).expect("starts");
        let (tx, rx) = std::sync::mpsc::channel();
        background.handle().spawn(async move {
            let _ = tx.send(current_thread_nice().expect("reads its own priority"));
        });
        let nice = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the task ran");
        assert_eq!(nice, (caller + BACKGROUND_NICE).min(19));
        // The caller's own thread is untouched.
        assert_eq!(current_thread_nice().unwrap(), caller);
    }

    #[tokio::test]
    async fn dropping_inside_another_runtime_does_not_panic() {
        let background = BackgroundRuntime::start(1, 0).expect("starts");
        let joined = background.handle().spawn(async { 7 }).await.expect("the task ran");
        assert_eq!(joined, 7);
        drop(background);
    }
}
