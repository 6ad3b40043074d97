//! The second stage of flag parsing for `ferry sync`: raw clap flags → validated settings.
//! Clap checks each value on its own; what needs `shared` to judge (platform filters) is
//! checked here, before any file is read or registry contacted, so a bad flag exits 2.

use std::path::PathBuf;

use ferry::copy::CopyOptions;
use ferry::image::ImageOptions;
use regex::Regex;

use crate::args::{ImagesFormat, InputArgs, SyncArgs};
use crate::exit::UsageError;

/// Everything `ferry sync` needs, validated.
pub struct SyncSettings {
    pub input: InputArgs,
    pub copy: CopyOptions,
    /// `--immutable-tags`; with the rules' own patterns it makes `copy.immutable`.
    pub immutable_tags: Option<Regex>,
    pub retries: u32,
    pub outputs: Outputs,
}

/// Files written after the run.
pub struct Outputs {
    pub report: Option<PathBuf>,
    pub success_images: Option<PathBuf>,
    pub success_images_format: ImagesFormat,
}

impl TryFrom<SyncArgs> for SyncSettings {
    type Error = UsageError;

    fn try_from(args: SyncArgs) -> Result<Self, UsageError> {
        let platforms = args.platforms.filter()?;
        Ok(SyncSettings {
            input: args.input,
            copy: CopyOptions {
                proc: args.transfers.proc,
                image: ImageOptions {
                    force: args.force,
                    platforms,
                    referrers: args.referrer_args.options(),
                },
                ..CopyOptions::default()
            },
            immutable_tags: args.immutable.immutable_tags,
            retries: args.retries,
            outputs: Outputs {
                report: args.report,
                success_images: args.output_success_images,
                success_images_format: args.output_images_format,
            },
        })
    }
}
