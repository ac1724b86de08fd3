//! Background work at a lower priority than the work someone waits for.

/// Lowers the calling thread's scheduling priority by `by` nice steps (at most to 19). On
/// Linux a nice value belongs to a thread and the threads it starts inherit it, so work done
/// in the background (rollups ahead of an ingest, a receiver's flushes into the lake) yields
/// the cores to the threads that answer; with a core to spare it runs as fast as before. A
/// refusal (a sandbox without the call) is logged and leaves the priority as it was.
pub fn lower_this_thread(by: i32) {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let tid = Some(rustix::thread::gettid());
        let lowered = getpriority_process(tid)
            .and_then(|now| setpriority_process(tid, now.saturating_add(by).min(19)));
        if let Err(e) = lowered {
            tracing::debug!(error = %e, "Could not lower a background thread's priority.");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = by;
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn a_lowered_thread_and_the_threads_it_starts_run_lower_and_others_do_not() {
        use rustix::process::getpriority_process;
        let nice = || getpriority_process(Some(rustix::thread::gettid())).ok();
        let here = nice();
        let (lowered, child) = std::thread::spawn(move || {
            super::lower_this_thread(3);
            let lowered = nice();
            (lowered, std::thread::spawn(nice).join().ok().flatten())
        })
        .join()
        .unwrap_or_default();
        let expected = here.map(|n| (n + 3).min(19));
        assert_eq!(lowered, expected);
        assert_eq!(child, expected);
        // The caller's own thread is untouched.
        assert_eq!(nice(), here);
    }
}
