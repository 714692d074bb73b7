//! Who is asking, and what they may do.
//!
//! | who | reads stats of | edits sites | creates and deletes sites, manages people |
//! |---|---|---|---|
//! | owner (a person, or a configuration token for all sites) | every site | every managed site | yes |
//! | admin of chosen sites (a person, or a configuration token limited to sites) | those | those | no |
//! | viewer of chosen sites (a person) | those | no | no |
//! | whoever opened a shared dashboard | its site | no | no |

use serde::{Deserialize, Serialize};
use tally_core::{SiteId, settings::AdminToken};

use crate::ApiError;

/// A person's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    /// Everything, people included, on every site.
    Owner,
    /// Reads and edits the sites given.
    Admin,
    /// Reads the sites given.
    Viewer,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Viewer => "viewer",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "owner" => Some(Self::Owner),
            "admin" => Some(Self::Admin),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }
}

/// Who a request acts for.
#[derive(Debug, Clone)]
pub(crate) enum Principal {
    /// A token of `admin.tokens`: an owner, or an admin of the sites it is limited to.
    Token(AdminToken),
    /// A signed-in person, or one of their personal API tokens (`via_token`).
    Person {
        name: String,
        role: Role,
        /// The sites of an admin or viewer (an owner's are all).
        sites: Vec<SiteId>,
        via_token: bool,
    },
    /// Someone who opened a shared dashboard: a viewer of that one site.
    Share { id: String, site: SiteId },
}

impl Principal {
    fn role(&self) -> Role {
        match self {
            Self::Token(AdminToken::All(_)) => Role::Owner,
            Self::Token(AdminToken::Limited { .. }) => Role::Admin,
            Self::Person { role, .. } => *role,
            Self::Share { .. } => Role::Viewer,
        }
    }

    /// Whether it may read `site`'s statistics.
    pub(crate) fn allows(&self, site: &SiteId) -> bool {
        match self {
            Self::Token(token) => token.allows(site),
            Self::Person { role, sites, .. } => *role == Role::Owner || sites.contains(site),
            Self::Share { site: shared, .. } => shared == site,
        }
    }

    /// Whether it may edit `site`.
    pub(crate) fn may_edit(&self, site: &SiteId) -> bool {
        self.role() != Role::Viewer && self.allows(site)
    }

    /// Refuses anything but an owner, saying what only an owner may do.
    pub(crate) fn owner_only(&self, what: &str) -> Result<(), ApiError> {
        if self.role() == Role::Owner {
            return Ok(());
        }
        Err(ApiError::NotAllowed(format!(
            "only an owner may {what}; this {} is {} of its sites",
            self.kind(),
            match self.role() {
                Role::Viewer => "a viewer",
                _ => "an admin",
            }
        )))
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Token(_) => "token",
            Self::Person { .. } => "account",
            Self::Share { .. } => "shared link",
        }
    }

    /// The signed-in person (not a token of theirs, nor anyone else): who may manage their
    /// own account and make personal tokens.
    pub(crate) fn signed_in_person(&self) -> Result<&str, ApiError> {
        match self {
            Self::Person {
                name,
                via_token: false,
                ..
            } => Ok(name),
            _ => Err(ApiError::NotAllowed(
                "only a person signed in to the admin pages may do this (not a token or a shared link)"
                    .into(),
            )),
        }
    }

    /// Who made a change, for the record of changes (never a secret).
    pub(crate) fn actor(&self) -> String {
        match self {
            Self::Token(token) => format!("token {}", crate::session::fingerprint(token)),
            Self::Person { name, .. } => name.clone(),
            Self::Share { id, .. } => format!("shared link {id}"),
        }
    }
}
