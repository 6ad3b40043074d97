//! Property tests for every parser of outside input: whatever a registry, a sender, a queue
//! or a file hands ferry, parsing returns a value or an error and never panics; formats that
//! round-trip do, and what ferry builds from a value (a challenge, a `Link`, a
//! `Retry-After`, a token response) reads back as that value. The case count is modest so CI stays quick; `PROPTEST_CASES=100000 cargo
//! test -p ferry-core --test parsers` runs a longer search.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// The library, under the name its users know it by.
use ferry_core as ferry;

use ferry::auth::AuthConfig;
use ferry::env::MapEnv;
use ferry::image::{ImageOptions, PlannedImage};
use ferry::job::Job;
use ferry::manifest::{ImageConfig, ManifestBody};
use ferry::platform::PlatformFilter;
use ferry::reference::{Digest, Reference, Repository};
use ferry::registry::parsers::{next_link, parse_retry_after, relative_to_v2, token_response};
use ferry::registry::{media_types, parse_challenge, Challenge};
use ferry::rules::{rules_from_value, Defaults};
use ferry::webhook::{parse_events, parse_payload};
use proptest::prelude::*;
use serde_json::Value;

/// Arbitrary JSON, a few levels deep, with strings that look like references sometimes.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        "[a-z0-9.:/@_-]{0,60}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    "[a-zA-Z.]{0,12}",
                    Just("events".to_string()),
                    Just("target".to_string()),
                    Just("repository".to_string()),
                    Just("tag".to_string()),
                    Just("digest".to_string()),
                    Just("manifests".to_string()),
                    Just("layers".to_string()),
                ],
                inner,
                0..6
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Reference-shaped text: valid often, invalid in every way too.
fn reference_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]{1,8}(\\.[a-z0-9]{1,8}){0,2}(:[0-9]{1,5})?/[a-z0-9]{1,8}(/[a-z0-9._-]{1,8}){0,3}(:[A-Za-z0-9_.-]{1,20})?",
        "[a-z0-9]{1,8}/[a-z0-9]{1,8}@sha256:[0-9a-f]{64}",
        ".{0,80}",
    ]
}

/// An `include`/`exclude` entry: a tag, a `/regex/`, or junk.
fn tag_filter_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9.-]{1,10}",
        3 => "/[\\^$.*+?()\\[\\]|a-z0-9-]{0,10}/",
        1 => ".{0,12}",
    ]
}

/// Tags a repository might list: semver with or without `v`, pre-releases, build metadata,
/// and not-semver ones.
fn semver_ish_tag() -> impl Strategy<Value = String> {
    prop_oneof![
        "v?[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(-[a-z0-9.]{1,6})?(\\+[a-z0-9]{1,4})?",
        "[a-z0-9._-]{1,12}",
    ]
}

proptest! {

    #[test]
    fn references_parse_or_refuse_and_round_trip(text in reference_text()) {
        if let Ok(reference) = Reference::parse(&text) {
            let again = Reference::parse(&reference.to_string()).unwrap();
            prop_assert_eq!(again, reference);
        }
        let _ = Repository::parse(&text);
        let _ = text.parse::<Digest>();
    }

    #[test]
    fn job_bodies_never_panic(body in ".{0,300}") {
        let _ = Job::parse(&body);
    }

    #[test]
    fn jobs_round_trip(
        source in "[a-z]{1,8}\\.io/[a-z]{1,8}:[a-z0-9]{1,8}",
        targets in prop::collection::vec("[a-z]{1,8}\\.io/[a-z]{1,8}:[a-z0-9]{1,8}", 1..5),
        force in any::<bool>(),
    ) {
        let image = PlannedImage {
            source: Reference::parse(&source).unwrap(),
            digest: None,
            targets: targets.iter().map(|t| Reference::parse(t).unwrap()).collect(),
            rule_options: Default::default(),
            pushed_referrer: None,
        };
        let options = ImageOptions {
            force,
            platforms: PlatformFilter::parse(&["linux".into()], &["arm64:v8".into()]).unwrap(),
            ..ImageOptions::default()
        };
        let job = Job::from_planned(&image, "p", &options);
        let parsed = Job::parse(&job.to_body()).unwrap();
        prop_assert_eq!(&parsed, &job);
        let (_, parsed_options) = parsed.work().unwrap();
        prop_assert_eq!(parsed_options, options);
    }

    #[test]
    fn job_shaped_json_never_panics(value in json()) {
        let _ = Job::parse(&value.to_string());
    }

    #[test]
    fn images_files_never_panic(value in json()) {
        let env = MapEnv::default();
        let _ = rules_from_value(Path::new("images.yaml"), &value, &Defaults::default(), &env);
    }

    #[test]
    fn long_form_rules_never_panic_and_select_in_bounds(
        source in reference_text(),
        to in prop_oneof![reference_text().prop_map(Value::from), json()],
        include in prop::collection::vec(tag_filter_entry(), 0..4),
        exclude in prop::collection::vec(tag_filter_entry(), 0..4),
        semver in prop_oneof![
            3 => prop::sample::select(vec![">=1.0.0, <2", "^1", "*", "<1.5.0-rc"]).prop_map(String::from),
            1 => "[<>=~^*0-9., a-z-]{0,20}",
        ],
        latest in prop_oneof![
            3 => (1i64..8).prop_map(Value::from),
            1 => any::<i64>().prop_map(Value::from),
            1 => json(),
        ],
        extra in prop::option::of(("[a-z]{1,8}", json())),
        listed in prop::collection::vec(semver_ish_tag(), 0..20),
    ) {
        let mut tags = serde_json::json!({
            "include": include, "exclude": exclude, "semver": semver, "latest": latest,
        });
        let mut rule = serde_json::json!({ "to": to });
        if let Some((key, value)) = extra {
            tags[key.as_str()] = value.clone();
            rule[key.as_str()] = value;
        }
        rule["tags"] = tags;
        let value = serde_json::json!({ source: rule });
        let env = MapEnv::default();
        if let Ok(rules) = rules_from_value(Path::new("images.yaml"), &value, &Defaults::default(), &env) {
            for rule in &rules {
                let chosen = rule.select_from(&listed);
                if rule.lists_tags() {
                    prop_assert!(chosen.len() <= listed.len());
                }
                // Planning never takes a tag a webhook or a queued job would refuse.
                for (position, tag) in &chosen {
                    prop_assert!(rule.select(tag).contains(position), "{tag}");
                }
                if let Some(n) = rule.tags.latest {
                    let distinct: std::collections::BTreeSet<&String> =
                        chosen.iter().map(|(_, t)| t).collect();
                    prop_assert!(distinct.len() <= n);
                }
            }
        }
    }

    #[test]
    fn image_syncer_shaped_images_files_never_panic(
        rules in prop::collection::btree_map(reference_text(), reference_text(), 0..5),
    ) {
        let value = serde_json::to_value(rules).unwrap();
        let env = MapEnv::default();
        let _ = rules_from_value(Path::new("images.yaml"), &value, &Defaults::default(), &env);
    }

    #[test]
    fn auth_files_never_panic(value in json()) {
        let _ = AuthConfig::from_value(Path::new("auth.yaml"), &value, &MapEnv::default());
    }

    #[test]
    fn auth_keys_never_panic(key in ".{0,40}", user in ".{0,10}") {
        let value = serde_json::json!({ key: { "username": user, "password": "p" } });
        let _ = AuthConfig::from_value(Path::new("auth.yaml"), &value, &MapEnv::default());
    }

    #[test]
    fn webhook_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_events(&body, Some("docker.io"));
    }

    #[test]
    fn webhook_payloads_never_panic(value in json()) {
        let _ = parse_payload(&value, None);
        let _ = parse_payload(&value, Some("hub.example.com"));
        let wrapped = serde_json::json!({ "events": [value.clone()] });
        let _ = parse_payload(&wrapped, Some("hub.example.com"));
        let harbor = serde_json::json!({ "type": "PUSH_ARTIFACT", "event_data": value });
        let _ = parse_payload(&harbor, None);
    }

    #[test]
    fn challenges_never_panic(header in ".{0,200}") {
        let _ = parse_challenge(&header);
        let _ = parse_challenge(&format!("Bearer {header}"));
        let _ = parse_challenge(&format!("Bearer realm=\"{header}\",service=x"));
    }

    #[test]
    fn challenges_read_back_what_they_quote(
        realm in ".{0,60}",
        service in proptest::option::of(".{0,30}"),
        scheme in prop_oneof![Just("Bearer"), Just("bearer"), Just("BEARER")],
    ) {
        let quote = |text: &str| text.replace('\\', "\\\\").replace('"', "\\\"");
        let mut header = format!("{scheme} realm=\"{}\"", quote(&realm));
        if let Some(service) = &service {
            header += &format!(", service=\"{}\"", quote(service));
        }
        let expected = Challenge::Bearer { realm: realm.clone(), service: service.clone() };
        prop_assert_eq!(parse_challenge(&header), Some(expected));
    }

    #[test]
    fn link_headers_never_panic(header in ".{0,200}") {
        for text in [header.clone(), format!("<{header}>; rel=\"next\""), format!("<{header}>; rel=next, </x>; rel=prev")] {
            if let Some(link) = next_link(&text) {
                let _ = relative_to_v2(&link, "list tags");
            }
        }
    }

    #[test]
    fn link_headers_give_back_their_next_target(
        path in "[a-z0-9/_.-]{1,40}",
        query in "(\\?[a-z0-9=&%._-]{0,30})?",
        absolute in any::<bool>(),
        before in prop::collection::vec("[a-z0-9/]{0,10}", 0..3),
    ) {
        let target = if absolute {
            format!("https://registry.example.com/v2/{path}{query}")
        } else {
            format!("/v2/{path}{query}")
        };
        // Other relations may come first; only `next` is followed.
        let mut parts: Vec<String> = before.iter().map(|p| format!("</v2/{p}>; rel=\"prev\"")).collect();
        parts.push(format!("<{target}>;  rel=\"next\""));
        let header = parts.join(", ");
        prop_assert_eq!(next_link(&header), Some(target.clone()));
        prop_assert_eq!(relative_to_v2(&target, "list tags").unwrap(), format!("{path}{query}"));
    }

    #[test]
    fn retry_after_never_panics(value in ".{0,60}", now in any::<u32>()) {
        let now = UNIX_EPOCH + Duration::from_secs(u64::from(now));
        let _ = parse_retry_after(&value, now);
    }

    #[test]
    fn retry_after_reads_back_seconds_and_dates(seconds in any::<u64>(), now in 0u64..4_000_000_000, ahead in 0u64..1_000_000) {
        let epoch = UNIX_EPOCH + Duration::from_secs(now);
        prop_assert_eq!(parse_retry_after(&seconds.to_string(), epoch), Some(Duration::from_secs(seconds)));
        prop_assert_eq!(parse_retry_after(&format!(" {seconds} "), epoch), Some(Duration::from_secs(seconds)));
        let date = httpdate::fmt_http_date(epoch + Duration::from_secs(ahead));
        prop_assert_eq!(parse_retry_after(&date, epoch), Some(Duration::from_secs(ahead)));
        // A date already past is no wait.
        let past = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH);
        prop_assert_eq!(parse_retry_after(&past, epoch), Some(Duration::ZERO));
    }

    #[test]
    fn token_responses_never_panic(value in json(), bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = token_response(value.to_string().as_bytes());
        let _ = token_response(&bytes);
        let wrapped = serde_json::json!({ "token": value.clone(), "expires_in": value });
        let _ = token_response(wrapped.to_string().as_bytes());
    }

    #[test]
    fn token_responses_give_back_the_token_for_a_bounded_time(
        token in "[A-Za-z0-9._-]{1,60}",
        expires_in in proptest::option::of(any::<u64>()),
        as_access_token in any::<bool>(),
    ) {
        let field = if as_access_token { "access_token" } else { "token" };
        let mut body = serde_json::json!({ field: token, "issued_at": "2024-01-01T00:00:00Z" });
        if let Some(seconds) = expires_in {
            body["expires_in"] = seconds.into();
        }
        let (parsed, lifetime) = token_response(body.to_string().as_bytes()).unwrap();
        prop_assert_eq!(parsed, token);
        // However long a server says, a token is used for a day at most, and never longer
        // than it said.
        prop_assert!(lifetime <= Duration::from_secs(24 * 60 * 60));
        prop_assert!(lifetime <= Duration::from_secs(expires_in.unwrap_or(60)));
    }

    #[test]
    fn manifests_never_panic(value in json(), bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let text = value.to_string();
        for media_type in [
            media_types::OCI_INDEX,
            media_types::OCI_MANIFEST,
            media_types::DOCKER_MANIFEST,
            media_types::DOCKER_SCHEMA1_SIGNED,
            "application/json",
        ] {
            let _ = ManifestBody::parse(media_type, text.as_bytes());
            let _ = ManifestBody::parse(media_type, &bytes);
        }
        let _ = ImageConfig::parse(text.as_bytes());
    }

    #[test]
    fn platform_flags_never_panic(os in ".{0,30}", arch in ".{0,30}") {
        if let Ok(filter) = PlatformFilter::parse(&[os], &[arch]) {
            let again = PlatformFilter::parse(&filter.os_entries(), &filter.arch_entries());
            prop_assert_eq!(again.unwrap(), filter);
        }
    }
}
