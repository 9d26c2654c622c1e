//! gRPC over TLS with a real server process: the CLI trusts the server's CA,
//! a client without the CA is refused, and with --tls-client-ca only clients
//! holding a certificate the CA signed get in.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// A CA, a server certificate for localhost and 127.0.0.1, and a client
/// certificate, written as PEM files into `dir`.
fn certificates(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    for (name, subjects) in [
        (
            "server",
            vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
        ),
        ("client", vec!["client".to_owned()]),
    ] {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(subjects)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
}

fn list_jobs(address: std::net::SocketAddr, tls: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_batchops"))
        .args(["list-jobs", "--account-id", ACCOUNT, "--output", "json"])
        .args([
            "--endpoint",
            &format!("https://localhost:{}", address.port()),
        ])
        .args(tls)
        .output()
        .unwrap()
}

#[test]
fn the_cli_talks_tls_and_mutual_tls_keeps_strangers_out() {
    let db = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(TestDb::new());
    let objects = tempfile::tempdir().unwrap();
    let pki = tempfile::tempdir().unwrap();
    certificates(pki.path());
    let file = |name: &str| pki.path().join(name).display().to_string();

    // Server TLS: the CLI trusting the CA gets in; without the CA it cannot.
    let server = ServerProcess::start(
        &db,
        &objects.path().display().to_string(),
        &[
            "--tls-cert",
            &file("server.pem"),
            "--tls-key",
            &file("server.key"),
        ],
        &[],
    );
    let trusted = list_jobs(server.address, &["--ca-cert", &file("ca.pem")]);
    assert_eq!(
        trusted.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&trusted.stdout).trim(),
        r#"{"jobs":[],"nextPageToken":""}"#
    );
    let untrusted = list_jobs(server.address, &[]);
    assert_eq!(
        untrusted.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
    drop(server);

    // Mutual TLS: only a client with a certificate from the CA.
    let server = ServerProcess::start(
        &db,
        &objects.path().display().to_string(),
        &[
            "--tls-cert",
            &file("server.pem"),
            "--tls-key",
            &file("server.key"),
            "--tls-client-ca",
            &file("ca.pem"),
        ],
        &[],
    );
    let with_cert = list_jobs(
        server.address,
        &[
            "--ca-cert",
            &file("ca.pem"),
            "--client-cert",
            &file("client.pem"),
            "--client-key",
            &file("client.key"),
        ],
    );
    assert_eq!(
        with_cert.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&with_cert.stderr)
    );
    let without_cert = list_jobs(server.address, &["--ca-cert", &file("ca.pem")]);
    assert_ne!(without_cert.status.code(), Some(0));
}
