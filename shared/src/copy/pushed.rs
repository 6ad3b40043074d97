//! Jobs a webhook made for a pushed referrer (`PushedReferrer`, see `webhook::matching`):
//! what the copier makes sure of at the source before, or instead of, an image's copy. This
//! file owns those two cases; finding and copying referrers is `referrers`'s.
//!
//! A pushed referrer tag (`sha256-<hex>.sig`, …): the job copies its subject by digest, and
//! the subject's referrers with it. A registry may notify before it serves the tag
//! (distribution 2.8 notifies from its manifest PUT, before it links the tag, and lists the
//! tag a moment before a HEAD finds it), so first one HEAD of the tag must find it (the
//! source's listing made for this job is then taken to hold it). When it does not, the job
//! fails with [`CopyError::NotYetServed`], a transient kind: the run's rounds, or the
//! queue's redelivery, try again later, within their own limits.
//!
//! A manifest pushed by digest alone: one GET of it. Without a `subject` nothing is copied
//! (the children of an index pushed by tag come this way, and the index's own job copies
//! them). With subject S: one HEAD of S in each target repository; where S is, S's
//! referrers are brought up to date (listed anew, the pushed manifest counted among them
//! even where the source lists it nowhere, and the fallback index merged on targets
//! without the referrers API); where S is not, nothing (S's own copy will bring its
//! referrers), and the report notes it.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use super::referrers::{self, ReferrerSearch};
use super::tree::{ManifestProblem, ManifestTree};
use super::{Copier, CopyError};
use crate::image::PlannedImage;
use crate::manifest::ManifestBody;
use crate::reference::{Digest, Locator, Reference, Repository};
use crate::registry::{ErrorKind, Manifest};
use crate::report::ImageReport;

/// A manifest with a `subject`, pushed by digest alone, read from the source.
pub(super) struct PushedManifest {
    pub(super) subject: Digest,
    pub(super) tree: ManifestTree,
    /// Its descriptor, as a referrers list gives it.
    pub(super) entry: Value,
}

impl Copier {
    /// Fails, transiently, unless the source has the pushed referrer `tag` (see the
    /// module's notes).
    pub(super) async fn check_pushed_tag(
        &self,
        source: &Repository,
        tag: &str,
        listed_since: Option<Instant>,
    ) -> Result<(), CopyError> {
        match self.source_serves_tag(source, tag, listed_since).await? {
            true => Ok(()),
            false => Err(CopyError::NotYetServed(
                source.at(Locator::Tag(tag.to_string())),
            )),
        }
    }

    /// A manifest pushed by digest alone, `image.source`: its subject's referrers brought
    /// up to date on the target repositories holding the subject. `Ok(Some(reason))`:
    /// nothing was to be copied.
    pub(super) async fn copy_pushed_manifest(
        &self,
        image: &PlannedImage,
        search: ReferrerSearch<'_>,
        report: &mut ImageReport,
    ) -> Result<Option<String>, CopyError> {
        if !search.wanted.enabled {
            return Ok(Some("referrers are not copied: nothing copied".into()));
        }
        let source = &image.source;
        let lookup = self
            .scheduler
            .lookup()
            .await
            .map_err(|_| CopyError::Interrupted)?;
        let manifest = match self
            .client(source.repository.registry())?
            .manifest_get(source)
            .await
        {
            Err(e) if matches!(e.kind, ErrorKind::NotFound(_)) => {
                return Err(CopyError::SourceMissing(source.clone()))
            }
            other => other?,
        };
        let bad = |problem| CopyError::BadManifest {
            reference: source.clone(),
            problem,
        };
        let body = ManifestBody::parse(&manifest.media_type, &manifest.bytes)
            .map_err(|e| bad(ManifestProblem::NotJson(Arc::new(e))))?;
        let Some(subject) = body.subject().and_then(|s| s.digest.as_deref()) else {
            return Ok(Some("not a referrer: nothing copied".into()));
        };
        let subject: Digest = subject
            .parse()
            .map_err(|e| bad(ManifestProblem::BadDigest(e)))?;
        let entry = descriptor(&manifest, &body);
        let repositories = referrers::repositories(&image.targets);
        let at_subject: Vec<Reference> = repositories
            .iter()
            .map(|r| r.at(Locator::Digest(subject.clone())))
            .collect();
        let heads = self.target_heads(&at_subject).await?;
        let mut holding = Vec::new();
        for (repository, head) in repositories.into_iter().zip(heads) {
            match head {
                Some(_) => holding.push(repository),
                None => report.referrer_problems.push(format!(
                    "{repository} lacks the subject {subject}: its referrers go with its copy"
                )),
            }
        }
        if holding.is_empty() {
            return Ok(Some(format!(
                "no target holds the subject {subject}: nothing copied"
            )));
        }
        let tree = ManifestTree::of_manifest(&self.registries, source, manifest).await?;
        drop(lookup);
        let pushed = PushedManifest {
            subject: subject.clone(),
            tree,
            entry,
        };
        let search = ReferrerSearch {
            pushed: Some(&pushed),
            ..search
        };
        self.copy_referrers(&source.repository, vec![subject], &holding, search, report)
            .await?;
        Ok((report.referrers_copied == 0).then(|| "already in sync".into()))
    }
}

/// The descriptor a referrers list gives `manifest`: media type, digest, size, artifact
/// type and annotations.
fn descriptor(manifest: &Manifest, body: &ManifestBody) -> Value {
    let mut entry = json!({
        "mediaType": manifest.media_type,
        "digest": manifest.digest.as_str(),
        "size": manifest.bytes.len(),
    });
    if let Some(artifact_type) = body.artifact_type() {
        entry["artifactType"] = json!(artifact_type);
    }
    let annotations = serde_json::from_slice::<Value>(&manifest.bytes)
        .ok()
        .and_then(|document| document.get("annotations").cloned())
        .filter(Value::is_object);
    if let Some(annotations) = annotations {
        entry["annotations"] = annotations;
    }
    entry
}
