//! What a User-Agent says: crawler or not (isbot's list, headless browsers included), and
//! browser, OS and device class (woothee). Both run regular expressions, so results are
//! cached by User-Agent: a site's traffic comes from a few hundred distinct agents.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
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

/// Classifies agents, remembering the answers.
pub(crate) struct Agents {
    bots: isbot::Bots,
    seen: Mutex<HashMap<Box<str>, Arc<Agent>>>,
}

impl Agents {
    pub(crate) fn new() -> Self {
        Self {
            bots: isbot::Bots::default(),
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
        let (browser, os, device) = match woothee::parser::Parser::new().parse(user_agent) {
            Some(ua) => (
                ua.name.to_owned(),
                ua.os.to_owned(),
                device_class(ua.category),
            ),
            None => (String::new(), String::new(), "unknown".to_owned()),
        };
        let agent = Arc::new(Agent {
            bot: user_agent.trim().is_empty() || self.bots.is_bot(user_agent),
            browser,
            os,
            device,
        });
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= CAPACITY {
            seen.clear();
        }
        seen.insert(user_agent.into(), agent.clone());
        agent
    }
}

fn device_class(category: &str) -> String {
    match category {
        "pc" => "desktop",
        "smartphone" | "mobilephone" => "mobile",
        "appliance" => "other",
        _ => "unknown",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_are_classified_and_remembered() {
        let agents = Agents::new();
        let chrome = "Mozilla/5.0 (Linux; Android 14; SM-A546E) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0 Mobile Safari/537.36";
        let a = agents.classify(chrome);
        assert_eq!(
            (a.bot, a.browser.as_str(), a.device.as_str()),
            (false, "Chrome", "mobile")
        );
        assert!(
            Arc::ptr_eq(&a, &agents.classify(chrome)),
            "second lookup is cached"
        );
        assert!(
            agents
                .classify(
                    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
                )
                .bot
        );
        assert!(agents.classify("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/120.0 Safari/537.36").bot);
        assert!(agents.classify("").bot);
        assert!(agents.classify("curl/8.5.0").bot);
    }
}
