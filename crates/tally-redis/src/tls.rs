//! TLS to Redis (`rediss://` URLs), with rustls: the system's CAs or `redis.tls_ca_file`, and
//! a client certificate (`redis.tls_cert_file`, `redis.tls_key_file`) for a server that asks
//! for one.

use redis::{ClientTlsConfig, TlsCertificates};
use tally_core::settings::RedisSettings;

use crate::{Error, Result};

/// The certificates of the TLS settings, when there are any to give (`None` also for a
/// `rediss://` URL trusting the system's CAs).
pub(crate) fn certificates(settings: &RedisSettings) -> Result<Option<TlsCertificates>> {
    if settings.nodes().iter().any(|u| u.starts_with("rediss://")) {
        // The process's TLS implementation; a second call finds it installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let tls = settings.tls();
    if tls.ca_file.is_empty() && tls.cert_file.is_empty() {
        return Ok(None);
    }
    let read = |key: &str, path: &str| {
        std::fs::read(path).map_err(|e| Error::Tls(format!("redis.{key}: cannot read {path}: {e}")))
    };
    let root_cert = if tls.ca_file.is_empty() {
        None
    } else {
        Some(read("tls_ca_file", tls.ca_file)?)
    };
    let client_tls = if tls.cert_file.is_empty() {
        None
    } else {
        Some(ClientTlsConfig {
            client_cert: read("tls_cert_file", tls.cert_file)?,
            client_key: read("tls_key_file", tls.key_file)?,
        })
    };
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

/// `e`, or when it is a certificate Tally does not trust, an error naming the setting that
/// decides which certificates are trusted.
pub(crate) fn explain(settings: &RedisSettings, e: redis::RedisError) -> Error {
    let text = e.to_string();
    if !text.contains("certificate") {
        return Error::Redis(e);
    }
    let ca = settings.tls().ca_file;
    let trusted = if ca.is_empty() {
        "the system's CAs (set redis.tls_ca_file to the CA that signed it)".to_owned()
    } else {
        format!("the CA of redis.tls_ca_file ({ca})")
    };
    Error::Tls(format!(
        "Redis at {} presented a certificate not signed by {trusted}: {text}",
        settings.shown_url()
    ))
}
