//! The end-to-end demo behind `infra/demo.sh`: two local registries (plain HTTP source,
//! Basic auth over TLS target), a seeded multi-arch image, `ferry plan`, `ferry` (sync) twice
//! on image-syncer style files, and skopeo checking the copies are byte-identical; the files, which are left in `.ferry-demo/` to read and rerun.

use std::path::Path;

use support::{
    run_ferry, skopeo_inspect_raw, write_file, ImageSpec, Mode, Pki, Registry, BASIC_PASSWORD,
    BASIC_USER,
};

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
    let files = [
        format!("--auth={}", auth.display()),
        format!("--images={}", images.display()),
    ];
    run(&[&["plan".to_string()], &files[..]].concat());
    run(&[
        &files[..],
        &["--proc=6".to_string(), "--retries=3".to_string()],
    ]
    .concat());
    run(&[&files[..], &["--proc=6".to_string()]].concat());

    for (src_tag, dst) in [
        ("1.0", "mirror/app:1.0"),
        ("1.1", "mirror/app:1.1"),
        ("1.0", "pinned/app:1.0"),
    ] {
        let a = skopeo_inspect_raw(&source, &format!("demo/app:{src_tag}"));
        let b = skopeo_inspect_raw(&target, dst);
        if a != b {
            eprintln!("demo failed: {dst} differs from demo/app:{src_tag}");
            std::process::exit(1);
        }
        println!(
            "skopeo inspect --raw: {}/{dst} is byte-identical to its source",
            target.host()
        );
    }
    println!(
        "\nThe registries stop now; the input files stay in {}/.",
        dir.display()
    );
}

/// Runs ferry, showing the command and its output; a failure ends the demo.
fn run(args: &[String]) {
    println!("\n$ ferry {}", args.join(" "));
    let out = run_ferry(args, &[]);
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    if !out.success() {
        eprintln!("demo failed: ferry exited with {}", out.status);
        std::process::exit(1);
    }
}
