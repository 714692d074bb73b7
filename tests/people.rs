//! People, against real Redis and ClickHouse: the first owner from the command line, sign-in
//! with a name and password, invitations with one-time links, roles, removal ending sessions
//! at once, and no password or link secret stored anywhere in clear.

mod common;

use std::io::Write;

use common::{Auth, LIMITED, TOKEN, call, settings_with_limited_token as settings};
use reqwest::Method;
use serde_json::{Value, json};
use tally_testkit::TestApp;

const OWNER_PASSWORD: &str = "owner-password-Ünïcode-42";
const VIEWER_PASSWORD: &str = "viewer-password-long-7";

/// `tally ARGS` with `stdin`: (success, stdout, stderr).
fn tally(settings: &tally_core::Settings, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .envs(tally_testkit::env_for(settings))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Signs in through the form; the session cookie (`name=value`), or the status refused.
async fn sign_in(
    http: &reqwest::Client,
    app: &TestApp,
    form: &[(&str, &str)],
) -> Result<String, u16> {
    let r = http
        .post(app.url("/admin/login"))
        .form(form)
        .send()
        .await
        .unwrap();
    if r.status() != 303 {
        return Err(r.status().as_u16());
    }
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    Ok(cookie.split(';').next().unwrap().to_owned())
}

#[tokio::test]
async fn people_are_added_invited_signed_in_and_removed() {
    let redis = tally_testkit::RedisServer::start();
    let settings = settings(&redis);
    let app = TestApp::spawn(settings.clone()).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The first owner, from the command line, the password from standard input.
    let (ok, _, said) = tally(
        &settings,
        &["user", "add", "chief", "--owner", "--password-stdin"],
        &format!("{OWNER_PASSWORD}\n"),
    );
    assert!(ok, "{said}");
    let (ok, _, said) = tally(
        &settings,
        &["user", "add", "chief", "--owner", "--password-stdin"],
        &format!("{OWNER_PASSWORD}\n"),
    );
    assert!(!ok && said.contains("chief"), "a second chief: {said}");
    // Or with a one-time link.
    let (ok, link, said) = tally(&settings, &["user", "add", "deputy", "--owner"], "");
    assert!(
        ok && link.trim().contains("/admin/invite/"),
        "{link} {said}"
    );

    // Sign-in: a wrong password and an unknown name get the same answer.
    assert_eq!(
        sign_in(
            &http,
            &app,
            &[("name", "chief"), ("password", "wrong-password-1")]
        )
        .await,
        Err(401)
    );
    assert_eq!(
        sign_in(
            &http,
            &app,
            &[("name", "nobody"), ("password", OWNER_PASSWORD)]
        )
        .await,
        Err(401)
    );
    let owner = sign_in(
        &http,
        &app,
        &[("name", "chief"), ("password", OWNER_PASSWORD)],
    )
    .await
    .unwrap();
    let owner = Auth::Cookie(&owner);
    let users = app.url("/api/v1/users");
    let (status, list) = call(&http, Method::GET, &users, owner, None).await;
    assert_eq!(status, 200, "{list}");
    let names: Vec<(&str, bool)> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["name"].as_str().unwrap(), u["invited"].as_bool().unwrap()))
        .collect();
    assert_eq!(names, [("chief", false), ("deputy", true)]);

    // Invitations: who may, and what is checked.
    let viewer = json!({"name": "ward-leader", "role": "viewer", "sites": ["demo"]});
    assert_eq!(
        call(
            &http,
            Method::POST,
            &users,
            Auth::None,
            Some(viewer.clone())
        )
        .await
        .0,
        401
    );
    let (status, body) = call(
        &http,
        Method::POST,
        &users,
        Auth::Token(LIMITED),
        Some(viewer.clone()),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    for (bad, field) in [
        (
            json!({"name": "Ward Leader", "role": "viewer", "sites": ["demo"]}),
            "name",
        ),
        (json!({"name": "w", "role": "viewer", "sites": []}), "sites"),
        (
            json!({"name": "w", "role": "viewer", "sites": ["nope"]}),
            "sites",
        ),
        (
            json!({"name": "w", "role": "owner", "sites": ["demo"]}),
            "sites",
        ),
        (
            json!({"name": "w", "role": "king", "sites": ["demo"]}),
            "role",
        ),
    ] {
        let (status, body) = call(&http, Method::POST, &users, owner, Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(field),
            "{bad}: {body}"
        );
    }
    let (status, invited) = call(&http, Method::POST, &users, owner, Some(viewer.clone())).await;
    assert_eq!(status, 201, "{invited}");
    assert_eq!(
        call(
            &http,
            Method::POST,
            &users,
            Auth::Token(TOKEN),
            Some(viewer.clone())
        )
        .await
        .0,
        409
    );
    let link = invited["invite_url"].as_str().unwrap().to_owned();
    let secret = link.rsplit('/').next().unwrap().to_owned();
    let path = format!("/admin/invite/{secret}");

    // The link: a page to set a password, used once.
    let page = http.get(app.url(&path)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("ward-leader"));
    let short = http
        .post(app.url(&path))
        .form(&[("password", "short")])
        .send()
        .await
        .unwrap();
    assert_eq!(short.status(), 400);
    let joined = http
        .post(app.url(&path))
        .form(&[("password", VIEWER_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(joined.status(), 303);
    let viewer_cookie = joined.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let again = http
        .post(app.url(&path))
        .form(&[("password", VIEWER_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404, "a link works once");

    // A viewer reads its site and changes nothing.
    let viewer = Auth::Cookie(&viewer_cookie);
    let (status, sites) = call(&http, Method::GET, &app.url("/api/v1/sites"), viewer, None).await;
    assert_eq!(status, 200);
    assert_eq!(sites["sites"].as_array().unwrap().len(), 1);
    assert_eq!(call(&http, Method::GET, &users, viewer, None).await.0, 403);
    let (status, body) = call(
        &http,
        Method::POST,
        &app.url("/api/v1/sites"),
        viewer,
        Some(json!({"id": "x", "domains": ["x.vn"]})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        call(
            &http,
            Method::GET,
            &app.url("/api/v1/sites/demo/stats/summary"),
            viewer,
            None
        )
        .await
        .0,
        200
    );
    // Another site's page cannot make a signed-in browser change anything.
    let Auth::Cookie(owner_cookie) = owner else {
        unreachable!()
    };
    let forged = http
        .post(app.url("/api/v1/users"))
        .header("cookie", owner_cookie)
        .header("origin", "https://evil.example")
        .json(&json!({"name": "mallory", "role": "owner"}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(forged.json::<Value>().await.unwrap()["code"], "cross_site");
    // Signing in with the password it set works too.
    assert!(
        sign_in(
            &http,
            &app,
            &[("name", "ward-leader"), ("password", VIEWER_PASSWORD)]
        )
        .await
        .is_ok()
    );

    // Removed: every session of the viewer ends at once.
    let leader = app.url("/api/v1/users/ward-leader");
    assert_eq!(
        call(&http, Method::DELETE, &leader, Auth::Token(LIMITED), None)
            .await
            .0,
        403
    );
    assert_eq!(
        call(
            &http,
            Method::DELETE,
            &app.url("/api/v1/users/chief"),
            owner,
            None
        )
        .await
        .0,
        409
    );
    assert_eq!(
        call(&http, Method::DELETE, &leader, owner, None).await.0,
        204
    );
    assert_eq!(
        call(&http, Method::DELETE, &leader, owner, None).await.0,
        404
    );
    assert_eq!(
        call(&http, Method::GET, &app.url("/api/v1/sites"), viewer, None)
            .await
            .0,
        401
    );
    assert_eq!(
        sign_in(
            &http,
            &app,
            &[("name", "ward-leader"), ("password", VIEWER_PASSWORD)]
        )
        .await,
        Err(401)
    );

    // Nothing stored holds a password or a link's secret in clear.
    let stored = common::run_sql(
        &settings,
        &format!(
            "SELECT * FROM {}.people FORMAT TSV",
            settings.clickhouse.database
        ),
    )
    .await;
    let audit = common::run_sql(
        &settings,
        &format!(
            "SELECT * FROM {}.audit_log FORMAT TSV",
            settings.clickhouse.database
        ),
    )
    .await;
    let mut conn = redis::Client::open(settings.redis.nodes()[0])
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut in_redis = keys.join("\n");
    for key in &keys {
        let dumped: Option<Vec<u8>> = redis::cmd("DUMP")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        in_redis.push_str(&String::from_utf8_lossy(&dumped.unwrap_or_default()));
    }
    assert!(stored.contains("$argon2id$"), "{stored}");
    for secret in [
        OWNER_PASSWORD,
        VIEWER_PASSWORD,
        secret.as_str(),
        link.trim(),
    ] {
        for (what, text) in [
            ("people", &stored),
            ("audit_log", &audit),
            ("redis", &in_redis),
        ] {
            assert!(!text.contains(secret), "{what} holds a secret in clear");
        }
    }
    app.stop().await;
}

/// The `name=value` of the `tally_share` cookie a response sets.
fn share_cookie(r: &reqwest::Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("tally_share="))
        .expect("a shared-dashboard cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_shared_link_shows_the_statistics_until_revoked() {
    let redis = tally_testkit::RedisServer::start();
    let app = TestApp::spawn(settings(&redis)).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let shares = app.url("/api/v1/sites/demo/shares");
    assert_eq!(
        call(&http, Method::POST, &shares, Auth::None, Some(json!({})))
            .await
            .0,
        401
    );
    let (status, open) = call(
        &http,
        Method::POST,
        &shares,
        Auth::Token(LIMITED),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 201, "an admin of the site may share it: {open}");
    let (status, body) = call(
        &http,
        Method::POST,
        &shares,
        Auth::Token(TOKEN),
        Some(json!({"password": "short"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, guarded) = call(
        &http,
        Method::POST,
        &shares,
        Auth::Token(TOKEN),
        Some(json!({"password": "ward-password-42"})),
    )
    .await;
    assert_eq!(
        (status, guarded["password"].as_bool()),
        (201, Some(true)),
        "{guarded}"
    );

    // The open link: the page, and a session that reads that one site.
    let path = |url: &Value| {
        url["url"]
            .as_str()
            .unwrap()
            .split_once("/share/")
            .map(|(_, s)| format!("/share/{s}"))
            .unwrap()
    };
    let page = http.get(app.url(&path(&open))).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let visitor = share_cookie(&page);
    assert!(page.text().await.unwrap().contains("demo"));
    let visitor = Auth::Cookie(&visitor);
    for (url, want) in [
        ("/api/v1/sites/demo/stats/realtime", 200),
        ("/api/v1/sites/demo/stats/summary", 200),
        ("/api/v1/users", 403),
        ("/api/v1/sites/demo/shares", 403),
    ] {
        assert_eq!(
            call(&http, Method::GET, &app.url(url), visitor, None)
                .await
                .0,
            want,
            "{url}"
        );
    }
    let (status, _) = call(
        &http,
        Method::POST,
        &app.url("/api/v1/sites"),
        visitor,
        Some(json!({"id": "x", "domains": ["x.vn"]})),
    )
    .await;
    assert_eq!(status, 403);

    // The guarded link asks for its password first.
    let guarded_path = path(&guarded);
    let ask = http.get(app.url(&guarded_path)).send().await.unwrap();
    assert_eq!(ask.status(), 200);
    assert!(ask.headers().get("set-cookie").is_none());
    assert!(
        !ask.text().await.unwrap().contains("chart"),
        "no statistics before the password"
    );
    let wrong = http
        .post(app.url(&guarded_path))
        .form(&[("password", "not-the-one-1")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = http
        .post(app.url(&guarded_path))
        .form(&[("password", "ward-password-42")])
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 303);
    let guarded_cookie = share_cookie(&right);
    let shown = http
        .get(app.url(&guarded_path))
        .header("cookie", &guarded_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(shown.status(), 200);

    // Revoked: the link and its sessions stop at once.
    let (_, list) = call(&http, Method::GET, &shares, Auth::Token(TOKEN), None).await;
    assert_eq!(list["shares"].as_array().unwrap().len(), 2, "{list}");
    let revoke = app.url(&format!(
        "/api/v1/sites/demo/shares/{}",
        open["id"].as_str().unwrap()
    ));
    assert_eq!(
        call(&http, Method::DELETE, &revoke, Auth::Token(TOKEN), None)
            .await
            .0,
        204
    );
    assert_eq!(
        call(&http, Method::DELETE, &revoke, Auth::Token(TOKEN), None)
            .await
            .0,
        404
    );
    assert_eq!(
        http.get(app.url(&path(&open)))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        call(
            &http,
            Method::GET,
            &app.url("/api/v1/sites/demo/stats/realtime"),
            visitor,
            None
        )
        .await
        .0,
        401
    );
    // The other link still works.
    let still = http
        .get(app.url(&guarded_path))
        .header("cookie", &guarded_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn personal_tokens_password_changes_and_signing_out_everywhere() {
    let redis = tally_testkit::RedisServer::start();
    let settings = settings(&redis);
    let app = TestApp::spawn(settings.clone()).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let db = app.db();
    tally_api::add_person(
        &db,
        "editor",
        "admin",
        vec!["demo".into()],
        Some("editor-password-1".into()),
    )
    .await
    .unwrap();
    let cookie = sign_in(
        &http,
        &app,
        &[("name", "editor"), ("password", "editor-password-1")],
    )
    .await
    .unwrap();
    let editor = Auth::Cookie(&cookie);
    let tokens = app.url("/api/v1/tokens");

    // Made by a person signed in, shown once.
    let (status, body) = call(
        &http,
        Method::POST,
        &tokens,
        Auth::Token(TOKEN),
        Some(json!({"label": "x"})),
    )
    .await;
    assert_eq!(
        status, 403,
        "a configuration token has no personal tokens: {body}"
    );
    for (bad, field) in [
        (json!({"label": ""}), "label"),
        (json!({"label": "x", "sites": ["nope"]}), "sites"),
    ] {
        let (status, body) = call(&http, Method::POST, &tokens, editor, Some(bad)).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["message"].as_str().unwrap().contains(field), "{body}");
    }
    let (status, read) = call(
        &http,
        Method::POST,
        &tokens,
        editor,
        Some(json!({"label": "dashboard", "read_only": true})),
    )
    .await;
    assert_eq!(status, 201, "{read}");
    let (_, write) = call(
        &http,
        Method::POST,
        &tokens,
        editor,
        Some(json!({"label": "automation"})),
    )
    .await;
    let read_token = read["token"].as_str().unwrap().to_owned();
    let write_token = write["token"].as_str().unwrap().to_owned();
    assert!(
        read_token.starts_with("tly_") && read_token.len() == 44,
        "{read_token}"
    );
    let (_, list) = call(&http, Method::GET, &tokens, editor, None).await;
    assert_eq!(list["tokens"].as_array().unwrap().len(), 2);
    assert!(
        !list.to_string().contains(&read_token),
        "listed without the secret"
    );

    // What each may do.
    let summary = app.url("/api/v1/sites/demo/stats/summary");
    let share = app.url("/api/v1/sites/demo/shares");
    assert_eq!(
        call(&http, Method::GET, &summary, Auth::Token(&read_token), None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(
            &http,
            Method::POST,
            &share,
            Auth::Token(&read_token),
            Some(json!({}))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            &http,
            Method::POST,
            &share,
            Auth::Token(&write_token),
            Some(json!({}))
        )
        .await
        .0,
        201
    );
    let (status, _) = call(
        &http,
        Method::POST,
        &tokens,
        Auth::Token(&read_token),
        Some(json!({"label": "more"})),
    )
    .await;
    assert_eq!(status, 403, "a token cannot mint tokens");
    assert_eq!(
        call(
            &http,
            Method::GET,
            &app.url("/api/v1/users"),
            Auth::Token(&write_token),
            None
        )
        .await
        .0,
        403
    );

    // An owner's read-only token reads every site, and changes nothing.
    tally_api::add_person(
        &db,
        "boss",
        "owner",
        Vec::new(),
        Some("boss-password-123".into()),
    )
    .await
    .unwrap();
    let boss = sign_in(
        &http,
        &app,
        &[("name", "boss"), ("password", "boss-password-123")],
    )
    .await
    .unwrap();
    let (_, boss_read) = call(
        &http,
        Method::POST,
        &tokens,
        Auth::Cookie(&boss),
        Some(json!({"label": "wall", "read_only": true})),
    )
    .await;
    let boss_read = boss_read["token"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&http, Method::GET, &summary, Auth::Token(&boss_read), None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(
            &http,
            Method::POST,
            &share,
            Auth::Token(&boss_read),
            Some(json!({}))
        )
        .await
        .0,
        403
    );

    // Revoked: stops at once.
    let revoke = app.url(&format!("/api/v1/tokens/{}", read["id"].as_str().unwrap()));
    assert_eq!(
        call(&http, Method::DELETE, &revoke, editor, None).await.0,
        204
    );
    assert_eq!(
        call(&http, Method::GET, &summary, Auth::Token(&read_token), None)
            .await
            .0,
        401
    );

    // Redis loses everything: people and tokens are still there (ClickHouse keeps them).
    let mut conn = redis::Client::open(settings.redis.nodes()[0])
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    assert_eq!(
        call(
            &http,
            Method::GET,
            &summary,
            Auth::Token(&write_token),
            None
        )
        .await
        .0,
        200
    );
    let cookie = sign_in(
        &http,
        &app,
        &[("name", "editor"), ("password", "editor-password-1")],
    )
    .await
    .unwrap();
    let editor = Auth::Cookie(&cookie);

    // A password change ends every session; the new password signs in, the old does not.
    let change = app.url("/api/v1/account/password");
    for (current, new, want) in [
        ("wrong-password-9", "editor-password-2", 403),
        ("editor-password-1", "short", 400),
        ("editor-password-1", "editor-password-2", 204),
    ] {
        let body = json!({"current": current, "new": new});
        let (status, _) = call(&http, Method::POST, &change, editor, Some(body)).await;
        assert_eq!(status, want, "{current} → {new}");
    }
    assert_eq!(call(&http, Method::GET, &tokens, editor, None).await.0, 401);
    assert_eq!(
        sign_in(
            &http,
            &app,
            &[("name", "editor"), ("password", "editor-password-1")]
        )
        .await,
        Err(401)
    );

    // Signing out everywhere ends the other browsers' sessions too.
    let one = sign_in(
        &http,
        &app,
        &[("name", "editor"), ("password", "editor-password-2")],
    )
    .await
    .unwrap();
    let two = sign_in(
        &http,
        &app,
        &[("name", "editor"), ("password", "editor-password-2")],
    )
    .await
    .unwrap();
    let everywhere = app.url("/api/v1/account/sign-out-everywhere");
    assert_eq!(
        call(&http, Method::POST, &everywhere, Auth::Cookie(&one), None)
            .await
            .0,
        204
    );
    assert_eq!(
        call(&http, Method::GET, &tokens, Auth::Cookie(&two), None)
            .await
            .0,
        401
    );

    // Removing the person stops their tokens.
    assert_eq!(
        call(
            &http,
            Method::DELETE,
            &app.url("/api/v1/users/editor"),
            Auth::Token(TOKEN),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        call(
            &http,
            Method::GET,
            &summary,
            Auth::Token(&write_token),
            None
        )
        .await
        .0,
        401
    );

    // No token or password in clear in ClickHouse.
    let stored = common::run_sql(
        &settings,
        &format!(
            "SELECT * FROM {db}.api_tokens FORMAT TSV",
            db = settings.clickhouse.database
        ),
    )
    .await
        + &common::run_sql(
            &settings,
            &format!(
                "SELECT * FROM {}.people FORMAT TSV",
                settings.clickhouse.database
            ),
        )
        .await;
    for secret in [
        read_token.as_str(),
        write_token.as_str(),
        "editor-password-1",
        "editor-password-2",
    ] {
        assert!(!stored.contains(secret));
    }
    app.stop().await;
}

/// The log of a real `tally serve` at debug level, after sign-ins with passwords, personal
/// tokens used and a shared link opened: no secret in it.
#[tokio::test]
async fn secrets_stay_out_of_the_logs() {
    let redis = tally_testkit::RedisServer::start();
    let settings = settings(&redis);
    let log = std::env::temp_dir().join(format!("tally-people-log-{}.log", std::process::id()));
    let served = common::Served::start_logging_to(
        &settings,
        "beacon,worker,api",
        &[("TALLY_LOG", "debug")],
        Some(&std::fs::File::create(&log).unwrap()),
    )
    .await;
    let db = tally_clickhouse::Db::new(&settings.clickhouse);
    tally_api::add_person(
        &db,
        "logged",
        "owner",
        Vec::new(),
        Some("logged-password-1".into()),
    )
    .await
    .unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .post(served.url("/admin/login"))
        .form(&[("name", "logged"), ("password", "logged-password-1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let made: Value = http
        .post(served.url("/api/v1/tokens"))
        .header("cookie", &cookie)
        .json(&json!({"label": "ci"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = made["token"].as_str().unwrap().to_owned();
    let shared: Value = http
        .post(served.url("/api/v1/sites/demo/shares"))
        .bearer_auth(&token)
        .json(&json!({"password": "share-password-1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let link = shared["url"].as_str().unwrap().to_owned();
    let secret = link.rsplit('/').next().unwrap().to_owned();
    let opened = http
        .post(format!("{}/share/{secret}", served.base))
        .form(&[("password", "share-password-1")])
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 303);
    drop(served);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("/admin/login"),
        "the log has the requests at debug level"
    );
    for secret in [
        "logged-password-1",
        token.as_str(),
        "share-password-1",
        secret.as_str(),
        cookie.split('=').nth(1).unwrap(),
    ] {
        assert!(
            !logged.contains(secret),
            "the log holds a secret: {}",
            &secret[..6]
        );
    }
    let _ = std::fs::remove_file(&log);
}
