//! TLS to ClickHouse (`https://` URLs), with rustls: the system's CAs or
//! `clickhouse.tls_ca_file`, and a client certificate (`clickhouse.tls_cert_file`,
//! `clickhouse.tls_key_file`) for a server that asks for one.

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tally_core::settings::ClickHouseSettings;

/// How long an idle connection stays open (ClickHouse closes its side after 3 s).
const TCP_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(60);

/// The connector of an `https://` URL. The settings were checked when they were loaded (each
/// file holds a PEM block of its kind); a file that rustls still cannot use is logged,
/// naming its key, and then trusts nothing (every request fails with that certificate
/// error) rather than falling back to something not asked for.
pub(crate) fn connector(settings: &ClickHouseSettings) -> HttpsConnector<HttpConnector> {
    // The process's TLS implementation; a second call finds it installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = settings.tls();
    let mut roots = rustls::RootCertStore::empty();
    if tls.ca_file.is_empty() {
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
    } else {
        match certificates(tls.ca_file) {
            Ok(certs) => {
                roots.add_parsable_certificates(certs);
            }
            Err(e) => tracing::error!("clickhouse.tls_ca_file: {e}"),
        }
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match identity(settings) {
        None => builder.with_no_client_auth(),
        Some(Ok((certs, key))) => builder
            .clone()
            .with_client_auth_cert(certs, key)
            .unwrap_or_else(|e| {
                tracing::error!("clickhouse.tls_cert_file: {e}");
                builder.with_no_client_auth()
            }),
        Some(Err(e)) => {
            tracing::error!("{e}");
            builder.with_no_client_auth()
        }
    };
    let mut http = HttpConnector::new();
    http.set_keepalive(Some(TCP_KEEPALIVE));
    http.enforce_http(false);
    HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

/// The client certificate and key, when configured; errors name their key.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn identity(settings: &ClickHouseSettings) -> Option<Result<Identity, String>> {
    let tls = settings.tls();
    if tls.cert_file.is_empty() {
        return None;
    }
    Some(
        certificates(tls.cert_file)
            .map_err(|e| format!("clickhouse.tls_cert_file: {e}"))
            .and_then(|certs| {
                let key = PrivateKeyDer::from_pem_file(tls.key_file)
                    .map_err(|e| format!("clickhouse.tls_key_file: {}: {e}", tls.key_file))?;
                Ok((certs, key))
            }),
    )
}

/// The certificates of the PEM file at `path`.
fn certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path} holds no certificate"));
    }
    Ok(certs)
}
