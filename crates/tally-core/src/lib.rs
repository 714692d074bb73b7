//! # tally-core
//!
//! Domain types and pure logic shared by every role; no I/O happens here.
//!
//! - [`settings`]: the configuration tree, loaded from the embedded reference
//!   (`config/tally.toml`), a file and `TALLY__SECTION__KEY` environment overrides.
//! - [`site`]: validated site identifiers and the partition a site lives in.
//! - [`event`]: what the tracker sends and what the beacon records.
//! - [`page`]: URL → page key normalisation.
//! - [`visitor`]: cookieless visitor ids (keyed hash with a daily salt).
//! - [`client`]: the client address behind trusted proxies.
//! - [`clock`]: the time the roles go by (the system clock, or one a test sets).
//! - [`dates`]: day ranges and local hours in a site's time zone.
//! - [`directory`]: the sites served now, from the configuration and managed live.
//! - [`retry`]: the one retry policy of the store writes (verdicts and backoff).

pub mod client;
pub mod clock;
pub mod dates;
pub mod directory;
pub mod event;
pub mod page;
pub mod retry;
pub mod settings;
pub mod site;
pub mod visitor;

pub use clock::Clock;
pub use event::{Event, EventKind};
/// Secret settings are `secrecy::SecretString`; `ExposeSecret` reads them.
pub use secrecy;
pub use settings::Settings;
pub use site::SiteId;
