//! `ferry discover`: flags to a selection and options, the library reads the manifests or
//! the cluster, and the images file goes to standard output or `-o FILE`, written only
//! once everything was read (an error leaves no file). Warnings go to standard error.

use std::io::Write as _;

use anyhow::Context as _;
use ferry::discover::{from_cluster, from_manifests, KubeSource, Options, Selection, TargetPrefix};
use ferry::env::ProcessEnv;

use crate::args::{DiscoverArgs, ImagesFormat};
use crate::exit::Status;

pub async fn run(args: DiscoverArgs) -> anyhow::Result<Status> {
    let selection = Selection::new(args.namespaces, args.exclude_namespaces)?;
    let options = Options {
        to: args.to.as_deref().map(TargetPrefix::parse).transpose()?,
        pin: args.pin,
    };
    let discovered = if args.files.is_empty() {
        let source = KubeSource {
            kubeconfig: args.kubeconfig,
            context: args.context,
        };
        from_cluster(&source, &ProcessEnv, &selection, &options).await?
    } else {
        from_manifests(&args.files, &selection, &options)?
    };
    for warning in &discovered.warnings {
        eprintln!("ferry: warning: {warning}");
    }
    let text = match args.format {
        ImagesFormat::Yaml => discovered.file.to_yaml(),
        ImagesFormat::Json => discovered.file.to_json(),
    };
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    eprintln!(
        "ferry: {} rule(s) for the images of the workloads read",
        discovered.file.rules.len()
    );
    Ok(Status::Success)
}
