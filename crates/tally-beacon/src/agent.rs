//! What a User-Agent says: crawler or not, and browser, OS and device class — all from
//! maintained upstream pattern data vendored in `data/` (refreshed by
//! `scripts/refresh-agent-data`, see `docs/decisions.md`):
//!
//! - crawlers: isbot's patterns (the list behind the most used bot detector) and the
//!   patterns of crawler-user-agents (the public list bot detectors are built from);
//! - browsers and OSes: uap-core's `regexes.yaml` (stored as JSON), run by the `ua-parser`
//!   crate, with the families named as people know them (macOS, iPadOS, Chrome, Safari, Cốc
//!   Cốc, Facebook's in-app browser…); Zalo's in-app browser, which uap-core does not know,
//!   is one local pattern ahead of uap-core's;
//! - device class (desktop, mobile, tablet): uap-core gives none, so it follows the OS and
//!   the conventions browsers keep (an Android tablet's agent lacks "Mobile").
//!
//! Every lookup runs regular expressions, so results are cached by User-Agent: a site's
//! traffic comes from a few hundred distinct agents.

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
};

/// Distinct agents remembered; the cache starts over when full.
const CAPACITY: usize = 10_000;

/// The classification of one User-Agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Agent {
    pub(crate) bot: bool,
    pub(crate) browser: String,
    pub(crate) os: String,
    pub(crate) device: String,
}

/// The compiled pattern data, built once per process.
struct Patterns {
    /// isbot's list, one pattern (it uses look-around, hence fancy-regex).
    isbot: fancy_regex::Regex,
    /// crawler-user-agents' patterns (RE2 syntax, checked upstream in Go).
    crawlers: regex::RegexSet,
    browsers: ua_parser::user_agent::Extractor<'static>,
    systems: ua_parser::os::Extractor<'static>,
}

#[derive(serde::Deserialize)]
struct Crawler {
    pattern: String,
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    let isbot: Vec<String> =
        serde_json::from_str(include_str!("../data/isbot-patterns.json")).expect("isbot data");
    let crawlers: Vec<Crawler> =
        serde_json::from_str(include_str!("../data/crawler-user-agents.json"))
            .expect("crawler-user-agents data");
    let uap: ua_parser::Regexes<'static> =
        serde_json::from_str(include_str!("../data/uap-regexes.json")).expect("uap-core data");
    let local = ua_parser::user_agent::Parser {
        regex: Cow::Borrowed(r"\bZalo[ /]?(?:android|iOS|ios)?/(\d+)"),
        family_replacement: Some(Cow::Borrowed("Zalo")),
        ..Default::default()
    };
    Patterns {
        isbot: fancy_regex::RegexBuilder::new(&from_javascript(&isbot.join("|")))
            .case_insensitive(true)
            .build()
            .expect("isbot's patterns compile"),
        crawlers: regex::RegexSetBuilder::new(crawlers.iter().map(|c| &c.pattern))
            .size_limit(64 << 20)
            .build()
            .expect("crawler-user-agents' patterns compile"),
        browsers: ua_parser::user_agent::Builder::new()
            .push(local)
            .and_then(|b| b.push_all(uap.user_agent_parsers))
            .expect("uap-core's browser patterns parse")
            .build()
            .expect("uap-core's browser patterns compile"),
        systems: ua_parser::os::Builder::new()
            .push_all(uap.os_parsers)
            .expect("uap-core's OS patterns parse")
            .build()
            .expect("uap-core's OS patterns compile"),
    }
});

/// isbot's patterns are JavaScript regular expressions. They differ from Rust's in one
/// place they use: a `-` after a class escape inside `[…]` (`[\w\d-.]`) is a literal there
/// and an error here, so it is escaped (an escaped `-` means the same anywhere).
fn from_javascript(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '\\'
            && let Some(&e) = chars.peek()
        {
            chars.next();
            out.push(e);
            if "wdsWDS".contains(e) && chars.peek() == Some(&'-') {
                chars.next();
                out.push_str("\\-");
            }
        }
    }
    out
}

/// Whether `user_agent` is a crawler, a monitor, a link preview or a script: anything but a
/// person's browser. An empty agent counts as a bot.
pub(crate) fn is_bot(user_agent: &str) -> bool {
    let p = &*PATTERNS;
    user_agent.trim().is_empty()
        || p.crawlers.is_match(user_agent)
        || p.isbot.is_match(user_agent).unwrap_or(false)
}

/// The browser family as people know it.
fn browser_name(family: &str) -> &str {
    match family {
        "Chrome" | "Chrome Mobile" | "Chrome Mobile iOS" | "Chromium" => "Chrome",
        "Chrome Mobile WebView" => "Android WebView",
        "Safari" | "Mobile Safari" | "Mobile Safari UI/WKWebView" => "Safari",
        "Firefox" | "Firefox Mobile" | "Firefox iOS" => "Firefox",
        "Edge" | "Edge Mobile" => "Edge",
        "Opera" | "Opera Mobile" => "Opera",
        "Coc Coc" => "Cốc Cốc",
        "Facebook" => "Facebook in-app",
        "FacebookMessenger" | "Facebook Messenger" => "Messenger in-app",
        "Instagram" => "Instagram in-app",
        "Google" => "Google app",
        "DuckDuckGo Mobile" => "DuckDuckGo",
        "Zalo" => "Zalo in-app",
        "Yandex Browser" | "YandexBrowser" => "Yandex Browser",
        "IE" | "IE Mobile" => "Internet Explorer",
        "Other" => "",
        other => other,
    }
}

/// The OS family as people know it; `ipad` says whether the agent names an iPad.
fn os_name(family: &str, ipad: bool) -> &str {
    match family {
        "iOS" if ipad => "iPadOS",
        "iOS" => "iOS",
        "Mac OS X" | "Mac OS" => "macOS",
        "Chrome OS" => "ChromeOS",
        "Ubuntu" | "Fedora" | "Debian" | "Linux Mint" | "Red Hat" | "Arch Linux" | "Gentoo"
        | "Slackware" | "Mandriva" | "SUSE" | "CentOS" => "Linux",
        "Other" => "",
        other => other,
    }
}

/// Desktop, mobile or tablet, from the OS and the agent's tokens.
fn device_class(os: &str, user_agent: &str) -> &'static str {
    let has = |token: &str| user_agent.contains(token);
    match os {
        "iPadOS" => "tablet",
        "iOS" => "mobile",
        _ if has("Tablet") || has("Kindle") || has("Silk/") || has("PlayBook") => "tablet",
        // Android browsers put "Mobile" in a phone's agent and leave it out on tablets.
        "Android" if has("Mobile") => "mobile",
        "Android" => "tablet",
        "Windows Phone" | "BlackBerry OS" | "KaiOS" | "Symbian OS" | "Firefox OS" => "mobile",
        // An iPad asking for desktop sites names macOS, and some add "Mobile/…": it cannot be
        // told from a Mac by its agent, so it counts as a desktop, like the Mac it poses as.
        "Windows" | "macOS" | "Linux" | "ChromeOS" | "FreeBSD" | "OpenBSD" | "NetBSD" => "desktop",
        _ if has("Mobi") => "mobile",
        _ => "unknown",
    }
}

/// Classifies `user_agent` (without the cache).
fn classify_uncached(user_agent: &str) -> Agent {
    let p = &*PATTERNS;
    let browser = p
        .browsers
        .extract(user_agent)
        .map(|b| browser_name(&b.family).to_owned())
        .unwrap_or_default();
    let os = p
        .systems
        .extract(user_agent)
        .map(|o| os_name(&o.os, user_agent.contains("iPad")).to_owned())
        .unwrap_or_default();
    let device = device_class(&os, user_agent).to_owned();
    Agent {
        bot: is_bot(user_agent),
        browser,
        os,
        device,
    }
}

/// Classifies agents, remembering the answers.
pub(crate) struct Agents {
    seen: Mutex<HashMap<Box<str>, Arc<Agent>>>,
}

impl Agents {
    /// A classifier; the pattern data compiles on first use in the process (about a
    /// second), so the beacon builds it before serving.
    pub(crate) fn new() -> Self {
        LazyLock::force(&PATTERNS);
        Self {
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn classify(&self, user_agent: &str) -> Arc<Agent> {
        if let Some(known) = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(user_agent)
        {
            return known.clone();
        }
        let agent = Arc::new(classify_uncached(user_agent));
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= CAPACITY {
            seen.clear();
        }
        seen.insert(user_agent.into(), agent.clone());
        agent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ua: &str) -> (bool, String, String, String) {
        let a = classify_uncached(ua);
        (a.bot, a.browser, a.os, a.device)
    }

    fn human(browser: &str, os: &str, device: &str) -> (bool, String, String, String) {
        (false, browser.into(), os.into(), device.into())
    }

    #[test]
    fn agents_are_classified_and_remembered() {
        let agents = Agents::new();
        let chrome = "Mozilla/5.0 (Linux; Android 14; SM-A546E) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0 Mobile Safari/537.36";
        let a = agents.classify(chrome);
        assert_eq!(
            (a.bot, a.browser.as_str(), a.os.as_str(), a.device.as_str()),
            (false, "Chrome", "Android", "mobile")
        );
        assert!(
            Arc::ptr_eq(&a, &agents.classify(chrome)),
            "second lookup is cached"
        );
    }

    #[test]
    fn families_are_named_as_people_know_them() {
        let cases = [
            (
                "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                human("Safari", "iPadOS", "tablet"),
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
                human("Safari", "iOS", "mobile"),
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
                human("Safari", "macOS", "desktop"),
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
                human("Edge", "Windows", "desktop"),
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) coc_coc_browser/128.0.200 Chrome/122.0.0.0 Safari/537.36",
                human("Cốc Cốc", "Windows", "desktop"),
            ),
            (
                "Mozilla/5.0 (Linux; Android 13; SM-X205) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Safari/537.36",
                human("Samsung Internet", "Android", "tablet"),
            ),
            (
                "Mozilla/5.0 (Linux; Android 12; CPH2219 Build/SP1A.210812.016; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/126.0.6478.134 Mobile Safari/537.36 Zalo android/12110209 ZaloTheme/light ZaloLanguage/vn",
                human("Zalo in-app", "Android", "mobile"),
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/470.0.0.34.107;FBBV/610391373;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/17.5;FBSS/3;FBCR/;FBID/phone;FBLC/vi_VN;FBOP/80]",
                human("Facebook in-app", "iOS", "mobile"),
            ),
            (
                "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                human("Chrome", "ChromeOS", "desktop"),
            ),
            (
                "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
                human("Firefox", "Linux", "desktop"),
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/116.0.0.0",
                human("Opera", "Windows", "desktop"),
            ),
        ];
        for (ua, want) in cases {
            assert_eq!(names(ua), want, "{ua}");
        }
    }

    #[test]
    fn javascript_class_ranges_become_literals() {
        assert_eq!(from_javascript(r"[\w\d-.]+"), r"[\w\d\-.]+");
        assert_eq!(from_javascript(r"a\\-b"), r"a\\-b");
    }

    #[test]
    fn crawlers_previews_and_scripts_are_bots() {
        for ua in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/120.0 Safari/537.36",
            "WhatsApp/2.23.20.0",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "meta-externalagent/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)",
            "Mozilla/5.0 (compatible; GoogleOther)",
            "anthropic-ai",
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
            "Datadog/Synthetics",
            "curl/8.5.0",
            "",
        ] {
            assert!(is_bot(ua), "{ua:?} is a bot");
        }
    }
}

/// The classification measured over public lists: every crawler agent of
/// crawler-user-agents, and the real browsers of the `user-agents` package
/// (`tests/data/browser-user-agents.tsv`). The figures go to stderr and to
/// `target/agent-figures.txt`, which `scripts/test` prints.
#[cfg(test)]
mod lists {
    use super::*;

    fn report(line: String) {
        eprintln!("{line}");
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/agent-figures.txt"
        );
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes()));
    }

    #[derive(serde::Deserialize)]
    struct Listed {
        #[serde(default)]
        instances: Vec<String>,
    }

    #[test]
    fn at_least_99_percent_of_a_public_crawler_list_is_filtered() {
        let listed: Vec<Listed> =
            serde_json::from_str(include_str!("../data/crawler-user-agents.json")).unwrap();
        let agents: Vec<&str> = listed
            .iter()
            .flat_map(|l| l.instances.iter().map(String::as_str))
            .collect();
        let missed: Vec<&str> = agents.iter().copied().filter(|ua| !is_bot(ua)).collect();
        let share = 1.0 - missed.len() as f64 / agents.len() as f64;
        report(format!(
            "agents: {}: {} of {} crawler agents filtered ({:.2} %), missed: {:?}",
            include_str!("../data/crawler-user-agents.version").trim(),
            agents.len() - missed.len(),
            agents.len(),
            share * 100.0,
            missed
        ));
        assert!(agents.len() > 2000, "the list has its agents");
        assert!(share >= 0.99, "{share}");
        // isbot's list alone (without crawler-user-agents' patterns) is measured too: the
        // two lists are kept up by different people, each catches what the other misses.
        let p = &*PATTERNS;
        let isbot_alone = agents
            .iter()
            .filter(|ua| p.isbot.is_match(ua).unwrap_or(false))
            .count();
        report(format!(
            "agents: isbot's patterns alone filter {isbot_alone} of {}; crawler-user-agents has {} patterns",
            agents.len(),
            listed.len()
        ));
    }

    /// (agent, device class) of a list in `tests/data/` (a tab between them, `#` comments).
    fn browsers(list: &'static str) -> Vec<(&'static str, &'static str)> {
        list.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split_once('\t'))
            .collect()
    }

    #[test]
    fn real_browsers_are_never_filtered_and_get_their_device_class() {
        check_browsers(
            include_str!("../../../tests/data/user-agents.version").trim(),
            browsers(include_str!("../../../tests/data/browser-user-agents.tsv")),
        );
    }

    #[test]
    fn real_browsers_of_a_second_list_too() {
        check_browsers(
            include_str!("../../../tests/data/fake-useragent.version").trim(),
            browsers(include_str!(
                "../../../tests/data/fake-useragent-browsers.tsv"
            )),
        );
    }

    fn check_browsers(source: &str, browsers: Vec<(&str, &str)>) {
        assert!(browsers.len() > 500, "the list has its agents");
        let filtered: Vec<&str> = browsers
            .iter()
            .map(|(ua, _)| *ua)
            .filter(|ua| is_bot(ua))
            .collect();
        let mut wrong_device = Vec::new();
        let mut unnamed = Vec::new();
        let mut families: std::collections::BTreeMap<String, usize> = Default::default();
        for (ua, device) in &browsers {
            let a = classify_uncached(ua);
            if a.device != *device {
                wrong_device.push(format!("{device} as {}: {ua}", a.device));
            }
            if a.browser.is_empty() || a.os.is_empty() {
                unnamed.push(*ua);
            }
            *families
                .entry(format!("{} / {}", a.browser, a.os))
                .or_default() += 1;
        }
        report(format!(
            "agents: {source}: {} real browser agents, {} filtered as bots, {} with another \
             device class than the list's, {} without a browser or OS name",
            browsers.len(),
            filtered.len(),
            wrong_device.len(),
            unnamed.len()
        ));
        report(format!(
            "agents: {source}: browser / OS families: {families:?}"
        ));
        assert_eq!(
            filtered,
            Vec::<&str>::new(),
            "real browsers filtered as bots"
        );
        assert_eq!(wrong_device, Vec::<String>::new(), "device classes");
        assert_eq!(unnamed, Vec::<&str>::new(), "agents without a name");
    }
}
