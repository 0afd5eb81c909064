//! Ctrl-C and SIGTERM: long runs stop cleanly (a flood stops sending, a collector commits).

use std::sync::{Mutex, OnceLock};

type Handler = Box<dyn Fn() + Send + 'static>;

static HANDLERS: OnceLock<Mutex<Vec<Handler>>> = OnceLock::new();

/// Run `f` on the first Ctrl-C or SIGTERM; a second one ends the process at once.
pub fn on_interrupt(f: impl Fn() + Send + 'static) {
    let handlers = HANDLERS.get_or_init(|| {
        let hit = std::sync::atomic::AtomicBool::new(false);
        let installed = ctrlc::set_handler(move || {
            if hit.swap(true, std::sync::atomic::Ordering::SeqCst) {
                std::process::exit(130);
            }
            if let Some(hs) = HANDLERS.get() {
                for h in hs.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                    h();
                }
            }
        });
        if let Err(e) = installed {
            tracing::warn!("cannot catch Ctrl-C: {e}");
        }
        Mutex::new(Vec::new())
    });
    handlers.lock().unwrap_or_else(|e| e.into_inner()).push(Box::new(f));
}
