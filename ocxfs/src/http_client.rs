//! The TLS trust every HTTP client of ocxfs is built with.
//!
//! Certificates are checked against the system's roots (on Linux the
//! distribution's bundle, or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set),
//! plus the CAs of `--ca-file`. Proxies come from `HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`, as reqwest reads them.

use std::path::Path;
use std::time::Duration;

use reqwest::Certificate;

use crate::error::{Error, Result};

/// What the API client and the storage client share: the same trusted roots.
#[derive(Clone, Default)]
pub struct HttpTrust {
    extra_roots: Vec<Certificate>,
}

impl HttpTrust {
    /// The system's roots, plus every certificate of the PEM file `ca_file`.
    pub fn new(ca_file: Option<&Path>) -> Result<HttpTrust> {
        let Some(path) = ca_file else {
            return Ok(HttpTrust::default());
        };
        let pem = std::fs::read(path)
            .map_err(|e| Error::Config(format!("cannot read --ca-file {}: {e}", path.display())))?;
        let extra_roots = Certificate::from_pem_bundle(&pem).map_err(|e| {
            Error::Config(format!(
                "--ca-file {}: not PEM certificates ({e})",
                path.display()
            ))
        })?;
        if extra_roots.is_empty() {
            return Err(Error::Config(format!(
                "--ca-file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            )));
        }
        Ok(HttpTrust { extra_roots })
    }

    /// A client builder with this trust and the settings all clients share.
    pub fn builder(&self) -> reqwest::ClientBuilder {
        // reqwest is built without a default TLS provider; use ring's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .user_agent(concat!("ocxfs/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .tls_certs_merge(self.extra_roots.iter().cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = HttpTrust::new(Some(&missing)).err().unwrap().to_string();
        assert!(err.starts_with("cannot read --ca-file"), "{err}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let err = HttpTrust::new(Some(&junk)).err().unwrap().to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        assert!(HttpTrust::new(None).unwrap().extra_roots.is_empty());
    }
}
