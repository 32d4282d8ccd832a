//! Where the API key comes from, in the onecodex CLI's order:
//! `--api-key`, `ONE_CODEX_BEARER_TOKEN`, `ONE_CODEX_API_KEY`, `~/.onecodex`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A secret string whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Sent as `X-API-Key`.
    ApiKey(Secret),
    /// Sent as `Authorization: Bearer`.
    Bearer(Secret),
}

/// Where a credential was found, for messages (never the value itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    BearerEnv,
    ApiKeyEnv,
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag => f.write_str("--api-key"),
            Source::BearerEnv => f.write_str("ONE_CODEX_BEARER_TOKEN"),
            Source::ApiKeyEnv => f.write_str("ONE_CODEX_API_KEY"),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The inputs of the lookup, so that it can be tested without touching the
/// process environment.
pub struct Lookup<'a> {
    pub flag: Option<&'a str>,
    pub bearer_env: Option<&'a str>,
    pub api_key_env: Option<&'a str>,
    pub home: Option<&'a Path>,
}

impl Lookup<'_> {
    pub fn resolve(&self) -> Result<(Credentials, Source)> {
        let present = |v: Option<&str>| v.map(str::trim).filter(|v| !v.is_empty()).map(Secret::new);
        if let Some(key) = present(self.flag) {
            return Ok((Credentials::ApiKey(key), Source::Flag));
        }
        if let Some(token) = present(self.bearer_env) {
            return Ok((Credentials::Bearer(token), Source::BearerEnv));
        }
        if let Some(key) = present(self.api_key_env) {
            return Ok((Credentials::ApiKey(key), Source::ApiKeyEnv));
        }
        if let Some(home) = self.home {
            let path = home.join(".onecodex");
            if path.exists() {
                let key = read_credentials_file(&path)?;
                return Ok((Credentials::ApiKey(key), Source::File(path)));
            }
        }
        Err(Error::Config(
            "no API key: pass --api-key, set ONE_CODEX_API_KEY, or run `onecodex login` \
             (or use --demo for the offline demo account)"
                .into(),
        ))
    }
}

/// Read a credentials file: `~/.onecodex` (`{"api_key": "…", "email": …}`)
/// or a file holding just the key (`--api-key-file`), warning when other
/// users can read it.
pub fn read_credentials_file(path: &Path) -> Result<Secret> {
    let unreadable =
        |e: &dyn std::fmt::Display| Error::Config(format!("cannot read {}: {e}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| unreadable(&e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            "credentials file is readable by other users; run: chmod 600 {}",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path).map_err(|e| unreadable(&e))?;
    #[derive(serde::Deserialize)]
    struct File {
        api_key: Option<String>,
    }
    let key = match serde_json::from_str::<File>(&text) {
        Ok(file) => file.api_key,
        // A bare key, alone on its line.
        Err(_)
            if !text.trim().is_empty()
                && !text.trim().contains(char::is_whitespace)
                && !text.trim_start().starts_with('{') =>
        {
            Some(text.trim().to_owned())
        }
        Err(e) => return Err(unreadable(&e)),
    };
    key.map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .map(Secret::new)
        .ok_or_else(|| Error::Config(format!("{} has no \"api_key\"", path.display())))
}

/// Resolve from the real environment.
pub fn from_environment(flag: Option<&str>) -> Result<(Credentials, Source)> {
    let bearer = std::env::var("ONE_CODEX_BEARER_TOKEN").ok();
    let api_key = std::env::var("ONE_CODEX_API_KEY").ok();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    Lookup {
        flag,
        bearer_env: bearer.as_deref(),
        api_key_env: api_key.as_deref(),
        home: home.as_deref(),
    }
    .resolve()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home_with(content: Option<&str>, mode: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        if let Some(c) = content {
            let p = dir.path().join(".onecodex");
            std::fs::write(&p, c).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        dir
    }

    #[test]
    fn follows_the_onecodex_cli_order() {
        let home = home_with(Some(r#"{"api_key": "filekey", "email": "a@b"}"#), 0o600);
        let all = Lookup {
            flag: Some("flagkey"),
            bearer_env: Some("tok"),
            api_key_env: Some("envkey"),
            home: Some(home.path()),
        };
        assert_eq!(
            all.resolve().unwrap(),
            (Credentials::ApiKey(Secret::new("flagkey")), Source::Flag)
        );
        let no_flag = Lookup { flag: None, ..all };
        assert_eq!(
            no_flag.resolve().unwrap().0,
            Credentials::Bearer(Secret::new("tok"))
        );
        let env_only = Lookup {
            bearer_env: Some(""),
            ..no_flag
        };
        assert_eq!(
            env_only.resolve().unwrap().0,
            Credentials::ApiKey(Secret::new("envkey"))
        );
        let file_only = Lookup {
            api_key_env: None,
            ..env_only
        };
        let (creds, source) = file_only.resolve().unwrap();
        assert_eq!(creds, Credentials::ApiKey(Secret::new("filekey")));
        assert_eq!(source, Source::File(home.path().join(".onecodex")));
    }

    #[test]
    fn missing_or_broken_credentials_are_clear_errors() {
        let empty = home_with(None, 0o600);
        let none = Lookup {
            flag: None,
            bearer_env: None,
            api_key_env: None,
            home: Some(empty.path()),
        };
        assert!(
            none.resolve()
                .unwrap_err()
                .to_string()
                .contains("no API key")
        );
        let broken = home_with(Some("{not json"), 0o600);
        let err = Lookup {
            home: Some(broken.path()),
            ..none
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains(".onecodex"), "{err}");
        let nokey = home_with(Some(r#"{"email": "a@b"}"#), 0o644);
        let err = Lookup {
            home: Some(nokey.path()),
            ..none
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("api_key"), "{err}");
    }

    #[test]
    fn key_files_hold_json_or_a_bare_key() {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("key");
        std::fs::write(&bare, "abc123\n").unwrap();
        assert_eq!(read_credentials_file(&bare).unwrap(), Secret::new("abc123"));
        let json = dir.path().join("json");
        std::fs::write(&json, r#"{"api_key": "k2"}"#).unwrap();
        assert_eq!(read_credentials_file(&json).unwrap(), Secret::new("k2"));
        let junk = dir.path().join("junk");
        std::fs::write(&junk, "two words").unwrap();
        assert!(read_credentials_file(&junk).is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let c = Credentials::ApiKey(Secret::new("supersecretkey"));
        assert!(!format!("{c:?}").contains("supersecret"));
    }
}
