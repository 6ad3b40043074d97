//! Test PKI: a throw-away certificate authority, a server certificate it signs
//! for `127.0.0.1`/`localhost`, and an RSA key with a self-signed certificate
//! that the token issuer signs JWTs with. Everything is generated once per
//! test process with the `openssl` command-line tool into a temporary
//! directory that lives until the process exits; [`Pki::get`] hands out the
//! paths.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Paths of the test PKI files (all PEM).
#[derive(Debug)]
pub struct Pki {
    /// The test CA certificate: trust this to talk to the TLS registries.
    pub ca_cert: PathBuf,
    /// The CA's private key.
    pub ca_key: PathBuf,
    /// Server certificate for `IP:127.0.0.1, DNS:localhost`, signed by the CA.
    pub server_cert: PathBuf,
    /// The server certificate's private key (EC P-256, PKCS#8).
    pub server_key: PathBuf,
    /// RSA-2048 token signing key (PKCS#1, as `jsonwebtoken` likes it).
    pub token_key: PathBuf,
    /// Self-signed certificate for [`Pki::token_key`]; the registry's
    /// `rootcertbundle` and the JWT `x5c` header.
    pub token_cert: PathBuf,
    ca_dir: PathBuf,
    _dir: tempfile::TempDir,
}

static PKI: OnceLock<Pki> = OnceLock::new();

impl Pki {
    /// The process-wide test PKI, generated on first use. Panics if `openssl`
    /// fails (there is nothing a test could do about it).
    pub fn get() -> &'static Pki {
        PKI.get_or_init(|| Pki::generate().expect("generating the test PKI with openssl"))
    }

    /// A directory that holds only the CA certificate, as `ca.crt`: the form
    /// skopeo's `--cert-dir`/`--src-cert-dir` and Docker's `certs.d` expect.
    pub fn ca_dir(&self) -> &Path {
        &self.ca_dir
    }

    /// The CA certificate's PEM text.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(&self.ca_cert).expect("reading the test CA certificate")
    }

    fn generate() -> anyhow::Result<Pki> {
        let dir = tempfile::Builder::new().prefix("ferry-pki-").tempdir()?;
        crate::remove_at_exit(dir.path().to_path_buf());
        let d = dir.path();
        std::fs::write(
            d.join("ca.cnf"),
            "[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = v3\n\
             [dn]\nCN = ferry test CA\n\
             [v3]\nbasicConstraints = critical,CA:TRUE\n\
             keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n",
        )?;
        std::fs::write(
            d.join("server.ext"),
            "basicConstraints = critical,CA:FALSE\n\
             keyUsage = critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage = serverAuth\n\
             subjectAltName = IP:127.0.0.1,DNS:localhost\n\
             authorityKeyIdentifier = keyid\nsubjectKeyIdentifier = hash\n",
        )?;
        let serial = format!("0x{:016x}", crate::net::random_u64() >> 1);
        let steps: &[&[&str]] = &[
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "3650",
                "-config",
                "ca.cnf",
            ],
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &serial,
                "-days",
                "3650",
                "-extfile",
                "server.ext",
                "-out",
                "server.crt",
            ],
            &["genrsa", "-traditional", "-out", "token.key", "2048"],
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "token.key",
                "-out",
                "token.crt",
                "-days",
                "3650",
                "-subj",
                "/CN=ferry test token issuer",
            ],
        ];
        for args in steps {
            let out = Command::new("openssl")
                .args(*args)
                .current_dir(d)
                .output()?;
            anyhow::ensure!(
                out.status.success(),
                "openssl {}: {}\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let ca_dir = d.join("ca-dir");
        std::fs::create_dir(&ca_dir)?;
        std::fs::copy(d.join("ca.crt"), ca_dir.join("ca.crt"))?;
        Ok(Pki {
            ca_cert: d.join("ca.crt"),
            ca_key: d.join("ca.key"),
            server_cert: d.join("server.crt"),
            server_key: d.join("server.key"),
            token_key: d.join("token.key"),
            token_cert: d.join("token.crt"),
            ca_dir,
            _dir: dir,
        })
    }
}
