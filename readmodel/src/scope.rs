//! Scopes of the cockpit figures: the whole organisation, or one sales user (the leads they own
//! or collaborate on).

use std::fmt;

/// Whose figures: the organisation's, or one user's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Every lead that is not deleted.
    Org,
    /// The leads this user (`owner_user_id`) owns or collaborates on.
    User(String),
}

impl Scope {
    /// The key stored in the `scope` column: `org` or `user:<id>`.
    pub fn key(&self) -> String {
        match self {
            Scope::Org => "org".to_owned(),
            Scope::User(id) => format!("user:{id}"),
        }
    }

    /// Parses a stored key back into a scope.
    pub fn from_key(key: &str) -> Option<Scope> {
        match key {
            "org" => Some(Scope::Org),
            _ => key
                .strip_prefix("user:")
                .map(|id| Scope::User(id.to_owned())),
        }
    }
}

/// Prints the key, which is also what `verify` names in its diff (`user:u1`).
impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

impl serde::Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.key())
    }
}

/// The users a lead belongs to: its owner and its collaborators, without blanks or repeats,
/// sorted so that results are deterministic.
pub fn lead_members(owner: Option<&str>, collaborators: &[String]) -> Vec<String> {
    let mut members: Vec<String> = owner
        .into_iter()
        .chain(collaborators.iter().map(String::as_str))
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    members.sort();
    members.dedup();
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for scope in [Scope::Org, Scope::User("u:1".into())] {
            assert_eq!(Scope::from_key(&scope.key()), Some(scope));
        }
        assert_eq!(Scope::from_key("team:x"), None);
    }

    #[test]
    fn members_skip_blanks_and_repeats() {
        let collaborators = vec!["u2".to_owned(), " ".to_owned(), "u1".to_owned()];
        assert_eq!(lead_members(Some("u1"), &collaborators), ["u1", "u2"]);
        assert!(lead_members(None, &[]).is_empty());
    }
}
