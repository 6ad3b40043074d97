//! Bad input: every malformed file or rule stops ferry with exit status 2 and a message
//! naming the file, the rule and the value, before any registry is contacted.

use support::{ferry_plan, temp_dir, write_file, ImageSpec, Mode, Registry, Workdir};

const D1: &str = "sha256:14b267eb38aa85fd12d0e168fffa2d8a6187ac53a14a0212b0d4fce8d729598c";
const D2: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// (file name, contents with `{src}` for the live registry, strings the message must contain)
fn cases() -> Vec<(&'static str, String, Vec<String>)> {
    let c = |file: &'static str, body: &str, needles: &[&str]| {
        (
            file,
            body.to_string(),
            needles.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    };
    vec![
        c(
            "images.yaml",
            "'': x.example.com/a\n",
            &["images.yaml", "the source is empty"],
        ),
        c(
            "images.yaml",
            "{src}/a/b:1,2: x.example.com/c:3\n",
            &[
                "images.yaml",
                "rule \"{src}/a/b:1,2\"",
                "\"x.example.com/c:3\"",
                "1 tag(s) but the source has 2",
            ],
        ),
        c(
            "images.yaml",
            &format!("{{src}}/a/b@{D1}@{D2}: x.example.com/c\n"),
            &["at most one digest", D2],
        ),
        c(
            "images.yaml",
            &format!("{{src}}/a/b@{D1}: x.example.com/c@{D2}\n"),
            &["differs from the source digest", D2, D1],
        ),
        c(
            "images.yaml",
            "{src}/a/b:/v(1/: x.example.com/c\n",
            &["invalid regex", "/v(1/"],
        ),
        c(
            "images.yaml",
            "{src}/A/b: x.example.com/c\n",
            &["invalid source", "A/b"],
        ),
        c(
            "images.yaml",
            "{src}/a/b: x.example.com/c:v1\n",
            &["names tags", "every tag"],
        ),
        c(
            "images.yaml",
            "{src}/a/b:v1: ''\n",
            &["no default registry"],
        ),
        c("images.yaml", "{src}/a/b:v1: $NOT_SET/c\n", &["$NOT_SET"]),
        c(
            "images.yaml",
            "{src}/a/b: [x.example.com/c\n",
            &["images.yaml", "malformed YAML"],
        ),
        c(
            "images.json",
            "{\"{src}/a/b\": ",
            &["images.json", "malformed JSON"],
        ),
        c(
            "images.toml",
            "x = 1\n",
            &["images.toml", "unknown file extension"],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_rule_is_named_and_nothing_is_contacted() {
    let reg = Registry::start(Mode::Http);
    reg.seed_image("a/b", "v1", &ImageSpec::with_layers(4, 1, 64))
        .await;
    let src = reg.host();
    let auth = Workdir::trusting(&[&reg]);
    for (file, body, needles) in cases() {
        let dir = temp_dir();
        // A valid rule next to the bad one: it must not be contacted either.
        let good = if file.ends_with("yaml") {
            format!("{src}/a/b:v1: x.example.com/ok\n")
        } else {
            String::new()
        };
        let images = write_file(
            dir.path(),
            file,
            format!("{good}{}", body.replace("{src}", &src)),
        );
        reg.clear_requests();
        let out = ferry_plan(Some(auth.auth()), &images, &[], &[]);
        out.assert_code(2);
        for needle in needles {
            let needle = needle.replace("{src}", &src);
            assert!(
                out.stderr.contains(&needle),
                "{file}: {body:?}: missing {needle:?}\n{out}"
            );
        }
        assert!(out.stdout.is_empty(), "{out}");
        assert!(
            reg.requests().is_empty(),
            "{body:?}: bad input must contact no registry: {:?}",
            reg.requests()
        );
    }
}

#[test]
fn bad_auth_files_are_named() {
    let dir = temp_dir();
    let images = write_file(
        dir.path(),
        "images.yaml",
        "127.0.0.1:1/a/b:v1: x.example.com/c\n",
    );
    for (body, needles) in [
        (
            "127.0.0.1:1:\n  pasword: x\n",
            vec!["auth.yaml", "127.0.0.1:1", "pasword"],
        ),
        (
            "127.0.0.1:1:\n  username: \"${UNSET_USER}\"\n",
            vec!["auth.yaml", "UNSET_USER"],
        ),
        (
            "127.0.0.1:1:\n  ca: ./missing.pem\n",
            vec!["auth.yaml", "missing.pem"],
        ),
        ("[1, 2]\n", vec!["auth.yaml"]),
    ] {
        let auth = write_file(dir.path(), "auth.yaml", body);
        let out = ferry_plan(Some(&auth), &images, &[], &[]);
        out.assert_code(2);
        for needle in needles {
            assert!(
                out.stderr.contains(needle),
                "{body:?}: missing {needle:?}\n{out}"
            );
        }
    }
}

#[test]
fn missing_files_and_bad_flags() {
    let dir = temp_dir();
    let out = ferry_plan(None, &dir.path().join("nope.yaml"), &[], &[]);
    out.assert_code(2);
    assert!(out.stderr.contains("nope.yaml"), "{out}");
    let out = support::run_ferry(&["plan", "--no-such-flag"], &[]);
    out.assert_code(2);
}
