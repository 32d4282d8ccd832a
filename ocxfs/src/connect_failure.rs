//! Tells a user why a connection could not be made, when the cause is one
//! they can fix: an untrusted or wrong certificate, a proxy that fails.
//!
//! reqwest reports both as "client error (Connect)"; the cause is deeper in
//! the error's source chain (a `rustls::Error`, an `io::Error`), and whether
//! a proxy was in the way is what reqwest's own proxy matcher says for the
//! URL.

use std::error::Error as StdError;

use hyper_util::client::proxy::matcher::Matcher;
use rustls::CertificateError;

use crate::error::Error;

/// The certificate or proxy failure behind `err`, named for the user, or
/// `None` when it is neither (or it is not a connection failure).
pub fn explain(err: &reqwest::Error) -> Option<Error> {
    let url = err.url()?;
    let host = url.host_str()?;
    if let Some(tls) = causes(err).find_map(|e| e.downcast_ref::<rustls::Error>()) {
        return Some(Error::Tls(tls_message(host, tls)));
    }
    if !err.is_connect() {
        return None;
    }
    let uri: http::Uri = url.as_str().parse().ok()?;
    let proxy = Matcher::from_env().intercept(&uri)?;
    // Only the proxy's address: its URI may carry a user and password.
    let proxy_addr = proxy.uri().authority()?.as_str();
    let proxy_addr = proxy_addr.rsplit('@').next().unwrap_or(proxy_addr);
    Some(Error::Proxy(format!(
        "cannot connect to {host} through the proxy {proxy_addr} ({}): check HTTPS_PROXY and \
         HTTP_PROXY, or add {host} to NO_PROXY",
        innermost_cause(err)
    )))
}

/// `err` and its sources, looking inside `io::Error`s (whose `source()`
/// skips the error they wrap).
fn causes<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |&e: &&'a (dyn StdError + 'static)| match e
        .downcast_ref::<std::io::Error>()
    {
        Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
        None => e.source(),
    })
}

/// The deepest cause, worded the way a user reads it.
fn innermost_cause(err: &reqwest::Error) -> String {
    let last = causes(err).last().expect("the chain starts with err");
    match last
        .downcast_ref::<std::io::Error>()
        .map(std::io::Error::kind)
    {
        Some(std::io::ErrorKind::ConnectionRefused) => "connection refused".into(),
        Some(std::io::ErrorKind::ConnectionReset) => "connection reset".into(),
        Some(std::io::ErrorKind::TimedOut) => "timed out".into(),
        _ => last.to_string(),
    }
}

/// What a failed TLS handshake with `host` means, and what to do.
fn tls_message(host: &str, err: &rustls::Error) -> String {
    let cert = |problem: &str, remedy: &str| format!("certificate for {host} {problem}: {remedy}");
    match err {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => cert(
                "not trusted (unknown issuer)",
                "pass --ca-file or set SSL_CERT_FILE",
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                cert(
                    "is for another name",
                    "check the host name, or whether a proxy presents its own certificate",
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                cert("has expired", "check this machine's clock")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                cert("is not valid yet", "check this machine's clock")
            }
            CertificateError::Revoked => cert("was revoked", "the server must replace it"),
            other => cert(
                &format!("was rejected ({other:?})"),
                "pass --ca-file or set SSL_CERT_FILE if a private CA issued it",
            ),
        },
        other => format!(
            "TLS handshake with {host} failed ({other}): check that the URL is HTTPS and whether a \
             proxy is in the way"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_failures_name_the_host_the_cause_and_the_remedy() {
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(
            tls_message("storage.example", &unknown),
            "certificate for storage.example not trusted (unknown issuer): pass --ca-file or set \
             SSL_CERT_FILE"
        );
        let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert_eq!(
            tls_message("h", &expired),
            "certificate for h has expired: check this machine's clock"
        );
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert!(tls_message("h", &name).starts_with("certificate for h is for another name"));
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure);
        assert!(tls_message("h", &alert).starts_with("TLS handshake with h failed"));
    }

    #[test]
    fn the_chain_is_followed_into_io_errors() {
        let tls = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let found = causes(&io).find_map(|e| e.downcast_ref::<rustls::Error>());
        assert!(matches!(
            found,
            Some(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        ));
    }
}
