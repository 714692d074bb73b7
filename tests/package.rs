//! The Debian package (issue 21), installed on this machine by `scripts/test` (which builds
//! it with `scripts/package` and installs it with `dpkg -i`): its files, its user, its
//! configuration loading, and a page view recorded through the installed binary. Ignored by
//! a plain `cargo test`, which installs nothing; `scripts/test` runs it with `--ignored`.

mod common;

use std::{path::Path, process::Command};

const INSTALLED: &str = "/usr/bin/tally";

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
#[ignore = "needs the package installed: scripts/test builds and installs it"]
async fn the_installed_package_records_a_page_view() {
    let (installed, status) = run("dpkg-query", &["-W", "-f", "${Status} ${Version}", "tally"]);
    assert!(
        installed && status.starts_with("install ok installed"),
        "{status}"
    );
    let version = env!("CARGO_PKG_VERSION");
    assert!(status.ends_with(version), "{status}");
    let (ok, out) = run(INSTALLED, &["--version"]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), format!("tally {version}"));

    for file in [
        "/etc/tally/tally.toml",
        "/etc/tally/redis.conf",
        "/etc/tally/beacon.env",
        "/lib/systemd/system/tally.service",
        "/lib/systemd/system/tally@.service",
        "/usr/share/doc/tally/operations.md",
    ] {
        assert!(Path::new(file).is_file(), "{file} is not installed");
    }
    let (ok, user) = run("getent", &["passwd", "tally"]);
    assert!(ok && user.contains("/var/lib/tally"), "{user}");
    let (_, mode) = run("stat", &["-c", "%a %U:%G", "/etc/tally/tally.toml"]);
    assert_eq!(
        mode.trim(),
        "640 root:tally",
        "the configuration may hold secrets"
    );
    // The shipped configuration loads as it is: every setting commented out, the defaults.
    let (ok, config) = run(INSTALLED, &["config", "--config", "/etc/tally/tally.toml"]);
    assert!(ok, "{config}");
    assert!(config.contains("redis://127.0.0.1:6379"), "{config}");
    let units = std::fs::read_to_string("/lib/systemd/system/tally@.service").unwrap();
    assert!(units.contains("ExecStart=/usr/bin/tally serve --roles %i"));
    // systemd reads the units, where its checker is installed (the systemd package).
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let (ok, verdict) = run(
            "systemd-analyze",
            &[
                "verify",
                "/lib/systemd/system/tally.service",
                "/lib/systemd/system/tally@beacon.service",
            ],
        );
        assert!(ok, "{verdict}");
    } else {
        eprintln!("systemd-analyze is not installed: the units are not verified");
    }

    // A page view through the installed binary, against the tests' Redis and ClickHouse.
    let settings = tally_testkit::settings();
    let served = common::Served::start_binary(
        Path::new(INSTALLED),
        &settings,
        "beacon,worker,api",
        &[],
        None,
    )
    .await;
    let http = reqwest::Client::new();
    assert_eq!(
        common::send_to(&http, &served.base, &common::Hit::view("/from-the-package")).await,
        204
    );
    let counters = common::demo_counters(&http, &served.base, "?page=/from-the-package").await;
    assert_eq!(counters["page_views"], 1, "{counters}");
    let db = tally_clickhouse::Db::new(&settings.clickhouse);
    common::wait_for("the view in ClickHouse", || async {
        db.count_events().await.unwrap_or(0) == 1
    })
    .await;
    let rows = db.debug_rows().await.unwrap();
    assert_eq!(rows[0].page, "/from-the-package");
}
