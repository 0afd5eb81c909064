//! Counter files kept open between rounds and re-read from offset 0 (one `pread` instead of
//! open + read + close: /proc, sysfs and cgroupfs regenerate their text on every read from the start).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::TelemetryError;

#[derive(Debug)]
pub(crate) struct KeptFile {
    path: PathBuf,
    file: Option<File>,
    /// Read buffer, kept (and kept initialized) between rounds.
    bytes: Vec<u8>,
}

impl KeptFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KeptFile { path: path.into(), file: None, bytes: Vec::new() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the whole file into `buf` (replacing its content). After a failed read the file is reopened
    /// once (it may have been replaced); a second failure is the error.
    pub fn read(&mut self, buf: &mut String) -> Result<(), TelemetryError> {
        if self.file.is_some() && self.read_open(buf).is_ok() {
            return Ok(());
        }
        self.file = None;
        self.file = Some(File::open(&self.path).map_err(|e| TelemetryError::read(&self.path, e))?);
        let r = self.read_open(buf);
        if r.is_err() {
            self.file = None;
        }
        r
    }

    fn read_open(&mut self, buf: &mut String) -> Result<(), TelemetryError> {
        let file = self.file.as_ref().expect("open");
        buf.clear();
        let len = read_all_at(file, &mut self.bytes).map_err(|e| TelemetryError::read(&self.path, e))?;
        match std::str::from_utf8(&self.bytes[..len]) {
            Ok(s) => {
                buf.push_str(s);
                Ok(())
            }
            Err(e) => Err(TelemetryError::parse(self.path.display().to_string(), format!("not UTF-8 text: {e}"))),
        }
    }
}

/// A short read below this many bytes is the end of the file. Regular files and the single-record files
/// of /proc, sysfs and cgroupfs return everything in one read; multi-record /proc files (/proc/net/dev)
/// return less than asked only when their 4 KiB page is nearly full, i.e. well above this. Saves the
/// second `pread` that would return 0.
const SHORT_READ_IS_EOF: usize = 3072;

/// Read from offset 0 to the end into `bytes` (grown as needed, never shrunk, so the buffer is zeroed
/// only when it grows); returns the length read.
pub(crate) fn read_all_at(file: &File, bytes: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut len = 0usize;
    loop {
        if bytes.len() < len + 4096 {
            bytes.resize(len + 8192, 0);
        }
        let space = bytes.len() - len;
        match file.read_at(&mut bytes[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if n < space && len < SHORT_READ_IS_EOF {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rereads_fresh_content_and_reopens_replaced_files() {
        let tmp = tempfile::Builder::new().prefix("vmgt-keptfile-").tempdir().unwrap();
        let dir = tmp.path();
        let p = dir.join("f");
        std::fs::write(&p, "one").unwrap();
        let mut f = KeptFile::new(&p);
        let mut buf = String::new();
        f.read(&mut buf).unwrap();
        assert_eq!(buf, "one");
        std::fs::write(&p, "two, longer than 8 KiB? no, but longer").unwrap();
        f.read(&mut buf).unwrap();
        assert_eq!(buf, "two, longer than 8 KiB? no, but longer");
        let big = "x".repeat(20_000);
        std::fs::write(&p, &big).unwrap();
        f.read(&mut buf).unwrap();
        assert_eq!(buf.len(), 20_000);
        std::fs::remove_file(&p).unwrap();
        // Still open: reads the unlinked file; a new file at the path is picked up only after a failure.
        assert!(f.read(&mut buf).is_ok());
        let mut gone = KeptFile::new(dir.join("none"));
        assert!(gone.read(&mut buf).unwrap_err().to_string().contains("cannot read"));
        // /proc regenerates on every read from 0.
        let mut stat = KeptFile::new("/proc/self/stat");
        stat.read(&mut buf).unwrap();
        assert!(buf.contains(&format!("{} (", std::process::id())));
    }
}
