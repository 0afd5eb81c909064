//! The victims: the same HTTP server (busybox httpd on port 80) as a bare process, in an OCI
//! container, and in a qemu guest, so that what differs between them is the isolation only.

pub mod container;
pub mod qemu;
pub mod vanilla;

use std::path::{Path, PathBuf};

use crate::LabError;

/// The busybox binary every victim runs its HTTP server with.
pub fn busybox() -> Result<PathBuf, LabError> {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return Ok(PathBuf::from(p));
        }
    }
    Err(LabError::Missing("busybox (Debian package busybox-static): run `make deps`".into()))
}

/// Write the document root a victim serves.
pub fn write_www(dir: &Path, who: &str) -> Result<(), LabError> {
    std::fs::create_dir_all(dir).map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
    let page = format!("<html><body><h1>vmguard victim: {who}</h1></body></html>\n");
    std::fs::write(dir.join("index.html"), page).map_err(|e| LabError::io(format!("writing {}", dir.display()), e))
}
