//! The planner's referrer check: an image whose targets are in sync may still lack
//! referrers there (a signature pushed since it was mirrored), and then its copy job goes
//! anyway; the copier brings them (`copy::referrers`). What refers to an image is read from
//! a listing of its source repository: the plan's when it listed the repository, else one
//! `tags/list` made here the first time an image of the repository is found in sync (a rule
//! naming tags or a digest, a fan-out slice's images), shared by its other images. So an
//! image without referrer tags costs no request, and a repository the plan did not list
//! costs one per plan. Deciding what a target lacks mirrors the copier's rules; copying is
//! its.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::{CheckError, Staleness};
use crate::copy::index_lacks_entries;
use crate::image::{
    fallback_tag, is_referrer_tag, referrer_subject, ImageOptions, PlannedImage, Referrers,
};
use crate::plan::head_source;
use crate::reference::{Digest, Locator, Repository};
use crate::registry::{Actions, ErrorKind, Manifest, ManifestHead, Registries, RegistryError};
use crate::target_tags::TargetTags;

/// A source repository's referrer tags (fallback indexes, cosign's).
type Tags = Arc<BTreeSet<String>>;

/// The referrer tags of source repositories: those of the repositories the plan listed, and
/// of any other listed here on first need, once per plan (concurrent askers wait for the
/// one listing).
#[derive(Default)]
pub(super) struct ReferrerTags {
    planned: BTreeMap<Repository, Tags>,
    listed_here: Mutex<HashMap<Repository, Arc<OnceCell<Tags>>>>,
}

impl ReferrerTags {
    /// From the plan's listings; none when referrers are off (nothing is asked then).
    pub(super) fn new(listings: &BTreeMap<Repository, Vec<String>>, image: &ImageOptions) -> Self {
        if !image.referrers.enabled {
            return ReferrerTags::default();
        }
        let planned = listings
            .iter()
            .map(|(repository, tags)| (repository.clone(), referrer_tags_in(tags)))
            .collect();
        ReferrerTags {
            planned,
            listed_here: Mutex::default(),
        }
    }

    /// The referrer tags of `repository`: from the plan's listing, else from one `tags/list`
    /// (all its pages) made on the first ask; a repository that does not exist has none.
    async fn of(
        &self,
        repository: &Repository,
        registries: &Registries,
    ) -> Result<Tags, RegistryError> {
        if let Some(tags) = self.planned.get(repository) {
            return Ok(Arc::clone(tags));
        }
        let cell = Arc::clone(
            self.listed_here
                .lock()
                .expect("referrer tags poisoned")
                .entry(repository.clone())
                .or_default(),
        );
        let tags = cell
            .get_or_try_init(|| async {
                match registries
                    .client(repository.registry())?
                    .tag_list(repository)
                    .await
                {
                    Ok(tags) => Ok(referrer_tags_in(&tags)),
                    Err(e) if matches!(e.kind, ErrorKind::NotFound(_)) => Ok(Tags::default()),
                    Err(e) => Err(e),
                }
            })
            .await?;
        Ok(Arc::clone(tags))
    }
}

fn referrer_tags_in(tags: &[String]) -> Tags {
    Arc::new(
        tags.iter()
            .filter(|t| is_referrer_tag(t))
            .cloned()
            .collect(),
    )
}

/// An image whose targets are in sync still needs a job when its source has referrers the
/// targets lack (a signature pushed after the image was mirrored). Its referrer tags come
/// from its repository's listing (see [`ReferrerTags`]); for each one it has, a
/// HEAD at the source and at each target repository: a cosign tag must be at the same
/// digest; a fallback index at another digest (the target merged referrers of its own) is
/// read on both sides (one GET each) and must list every source entry. With
/// `--referrers-type`, only what the copier would copy counts (`wanted`): a cosign tag a
/// target lacks only if its manifest (one GET) is of a wanted type, a fallback index only
/// for its entries of a wanted type, so a referrer of another type sends no job.
pub(super) async fn referrers_behind(
    image: &PlannedImage,
    digest: Digest,
    wanted: &Referrers,
    referrer_tags: &ReferrerTags,
    registries: &Registries,
) -> Result<Staleness, CheckError> {
    let fallback = fallback_tag(&digest);
    let listed = referrer_tags
        .of(&image.source.repository, registries)
        .await?;
    let tags: Vec<&String> = listed
        .iter()
        .filter(|tag| referrer_subject(tag).as_ref() == Some(&digest))
        .collect();
    let repositories = target_repositories(image);
    for tag in tags {
        let at = |repository: &Repository| repository.at(Locator::Tag(tag.clone()));
        let mut references = vec![at(&image.source.repository)];
        references.extend(repositories.iter().map(|r| at(r)));
        let heads = registries
            .manifest_heads(&references, Actions::Pull, references.len())
            .await?;
        let Some(source) = ManifestHead::digest_of(&heads[0]) else {
            continue; // gone since the listing
        };
        // The source's document at the tag, read (one GET) only when a target lacks the tag
        // and its content decides: a fallback index's entries, a cosign tag's type.
        let ours: OnceCell<Manifest> = OnceCell::new();
        let read_ours = || {
            ours.get_or_try_init(|| async {
                let client = registries.client(image.source.repository.registry())?;
                client.manifest_get(&references[0]).await
            })
        };
        let any_type = wanted.types.is_empty();
        for (reference, head) in references.iter().zip(&heads).skip(1) {
            let held = ManifestHead::digest_of(head);
            if held == Some(source) {
                continue;
            }
            let behind = match (*tag == fallback, held) {
                (false, _) | (true, None) if any_type => true,
                (false, _) => {
                    let ours = read_ours().await?;
                    wanted.wants_manifest(&ours.media_type, &ours.bytes)
                }
                (true, None) => index_lacks_entries(&read_ours().await?.bytes, &[], wanted),
                (true, Some(_)) => {
                    let client = registries.client(reference.repository.registry())?;
                    let theirs = client.manifest_get(reference).await?;
                    index_lacks_entries(&read_ours().await?.bytes, &theirs.bytes, wanted)
                }
            };
            if behind {
                return Ok(Staleness::Stale {
                    targets: image.targets.clone(),
                    digest: Some(digest),
                });
            }
        }
    }
    Ok(Staleness::InSync(Some(digest)))
}

/// An image whose immutable tag every target lists was spared any request (`target_tags`);
/// `image` comes with all its targets. Its referrers are checked only when the plan's
/// listing of its source repository shows a referrer tag that the listing of one of its
/// target repositories (made to spare it, so no new request) lacks: then its source is
/// HEADed and checked like any image's. A job that goes is by digest, to its target
/// repositories, as the webhook sends one for a new signature: the copier skips a copy of
/// an immutable tag the targets list, referrers and all. Images of a repository the plan
/// did not list are not checked: listing it would cost what immutable tags spare.
pub(super) async fn immutable_referrers_behind(
    image: PlannedImage,
    wanted: &Referrers,
    referrer_tags: &ReferrerTags,
    target_tags: &TargetTags,
    registries: &Registries,
) -> (PlannedImage, Result<Staleness, CheckError>) {
    let Some(source_tags) = referrer_tags.planned.get(&image.source.repository) else {
        return (image, Ok(Staleness::InSync(None)));
    };
    let mut lacking = false;
    for repository in target_repositories(&image) {
        if source_tags.is_empty() {
            break;
        }
        lacking = match target_tags.of(registries, repository).await {
            Some(listed) => source_tags.iter().any(|tag| !listed.contains(tag)),
            None => true,
        };
        if lacking {
            break;
        }
    }
    if !lacking {
        return (image, Ok(Staleness::InSync(None)));
    }
    let digest = match head_source(&image.source, registries).await {
        Ok(Some(digest)) => digest,
        // No digest told: nothing to compare; as without referrers.
        Ok(None) => return (image, Ok(Staleness::InSync(None))),
        Err(error) => return (image, Err(error.into())),
    };
    match referrers_behind(&image, digest.clone(), wanted, referrer_tags, registries).await {
        Ok(Staleness::Stale { .. }) => {
            let at = |repository: &Repository| repository.at(Locator::Digest(digest.clone()));
            let by_digest = PlannedImage {
                source: at(&image.source.repository),
                digest: Some(digest.clone()),
                targets: target_repositories(&image).into_iter().map(at).collect(),
                rule_options: image.rule_options.clone(),
            };
            let targets = by_digest.targets.clone();
            let stale = Staleness::Stale {
                targets,
                digest: Some(digest),
            };
            (by_digest, Ok(stale))
        }
        other => (image, other),
    }
}

/// The repositories of `image`'s targets, each once, in order.
fn target_repositories(image: &PlannedImage) -> Vec<&Repository> {
    let mut repositories: Vec<&Repository> = Vec::new();
    for target in &image.targets {
        if !repositories.contains(&&target.repository) {
            repositories.push(&target.repository);
        }
    }
    repositories
}
