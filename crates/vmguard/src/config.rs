//! The configuration file: `vmguard.toml`. Every section is optional; no file at all means defaults.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Everything `vmguard.toml` may hold. Sections are owned by the library crate that uses them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub lab: lab::LabSpec,
}

impl Config {
    /// Read `path`; a missing file gives the defaults, a malformed one a message naming the file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read config file {}", path.display())),
        };
        let config: Config = toml::from_str(&text).with_context(|| {
            format!(
                "config file {} is not valid (fix the field named above, or remove it to use the default)",
                path.display()
            )
        })?;
        config.lab.validate().with_context(|| format!("in config file {}", path.display()))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_means_defaults() {
        let c = Config::load(Path::new("/nonexistent/vmguard.toml")).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn bad_file_names_file_and_field() {
        let dir = std::env::temp_dir().join(format!("vmguard-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("vmguard.toml");
        std::fs::write(&p, "[lab]\nattacker_rate = \"fast\"\n").unwrap();
        let err = format!("{:#}", Config::load(&p).unwrap_err());
        assert!(err.contains("vmguard.toml") && err.contains("rate"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
