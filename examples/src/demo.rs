//! The end-to-end demo behind `infra/demo.sh`: two local registries (plain HTTP source,
//! Basic auth over TLS target), a seeded multi-arch image, and `ferry` run on image-syncer
//! style files, which are left in `.ferry-demo/` to read and rerun.

use std::path::Path;

use support::{run_ferry, write_file, ImageSpec, Mode, Pki, Registry, BASIC_PASSWORD, BASIC_USER};

#[tokio::main]
async fn main() {
    let source = Registry::start(Mode::Http);
    let target = Registry::start(Mode::BasicTls);
    println!(
        "source registry: http://{}  (plain HTTP, anonymous)",
        source.host()
    );
    println!(
        "target registry: https://{}  (Basic auth over TLS, test CA)",
        target.host()
    );

    let platforms = [("linux", "amd64", None), ("linux", "arm64", Some("v8"))];
    let index = source
        .seed_index("demo/app", "1.0", &platforms, false)
        .await;
    source
        .seed_image("demo/app", "1.1", &ImageSpec::with_layers(42, 2, 64 * 1024))
        .await;
    println!(
        "seeded {}/demo/app:1.0 (manifest list {})",
        source.host(),
        index.digest
    );
    println!("seeded {}/demo/app:1.1", source.host());

    let dir = Path::new(".ferry-demo");
    let auth = write_file(
        dir,
        "auth.yaml",
        format!(
            "{}:\n  insecure: true\n{}:\n  username: {BASIC_USER}\n  password: {BASIC_PASSWORD}\n  ca: {}\n",
            source.host(),
            target.host(),
            Pki::get().ca_cert.display()
        ),
    );
    let images = write_file(
        dir,
        "images.yaml",
        format!(
            "{0}/demo/app: {1}/mirror/app\n{0}/demo/app:/^1\\.0$/: {1}/pinned/app\n",
            source.host(),
            target.host()
        ),
    );
    let args = [
        "plan".to_string(),
        format!("--auth={}", auth.display()),
        format!("--images={}", images.display()),
    ];
    println!("\n$ ferry {}", args.join(" "));
    let out = run_ferry(&args, &[]);
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    if !out.success() {
        eprintln!("demo failed: ferry exited with {}", out.status);
        std::process::exit(1);
    }
    println!(
        "\nThe registries stop now; the input files stay in {}/.",
        dir.display()
    );
}
