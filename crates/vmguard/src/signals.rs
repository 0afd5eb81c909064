//! Ctrl-C and SIGTERM: long runs stop cleanly (a flood stops sending, a collector commits, a bench
//! restores what it changed).
//!
//! The first signal runs every registered handler. A second one ends the process at once, unless a
//! command said it must finish its clean-up ([`finish_cleanup_on_second_interrupt`], the demo tearing
//! the lab down): then the second is reported and only a third one ends the process.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

type Handler = Box<dyn Fn() + Send + 'static>;

static HANDLERS: OnceLock<Mutex<Vec<Handler>>> = OnceLock::new();
static HITS: AtomicU32 = AtomicU32::new(0);
static PROTECT_CLEANUP: AtomicBool = AtomicBool::new(false);

/// What the n-th signal (1-based) does.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    RunHandlers,
    Warn,
    Exit,
}

fn action(hit: u32, protect_cleanup: bool) -> Action {
    match (hit, protect_cleanup) {
        (1, _) => Action::RunHandlers,
        (2, true) => Action::Warn,
        _ => Action::Exit,
    }
}

/// Run `f` on the first Ctrl-C or SIGTERM.
pub fn on_interrupt(f: impl Fn() + Send + 'static) {
    let handlers = HANDLERS.get_or_init(|| {
        let installed = ctrlc::set_handler(move || {
            let hit = HITS.fetch_add(1, Ordering::SeqCst) + 1;
            match action(hit, PROTECT_CLEANUP.load(Ordering::SeqCst)) {
                Action::RunHandlers => {
                    if let Some(hs) = HANDLERS.get() {
                        for h in hs.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                            h();
                        }
                    }
                }
                Action::Warn => eprintln!("\nstill cleaning up (the lab is being torn down); Ctrl-C again to quit now"),
                Action::Exit => std::process::exit(130),
            }
        });
        if let Err(e) = installed {
            tracing::warn!("cannot catch Ctrl-C: {e}");
        }
        Mutex::new(Vec::new())
    });
    handlers.lock().unwrap_or_else(|e| e.into_inner()).push(Box::new(f));
}

/// From now on a second Ctrl-C does not end the process: the command finishes its clean-up.
pub fn finish_cleanup_on_second_interrupt() {
    PROTECT_CLEANUP.store(true, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_interrupt_exits_unless_cleanup_is_protected() {
        assert_eq!(action(1, false), Action::RunHandlers);
        assert_eq!(action(2, false), Action::Exit);
        assert_eq!(action(1, true), Action::RunHandlers);
        assert_eq!(action(2, true), Action::Warn);
        assert_eq!(action(3, true), Action::Exit);
    }
}
