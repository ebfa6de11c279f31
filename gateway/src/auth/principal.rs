//! The caller a valid token names: the user id from the configured claim, the roles from
//! `realm_access.roles` (Keycloak) or `roles`, and which figures those roles may read.

use serde_json::Value;

use super::{AuthError, MAX_USER_ID_CHARS};
use crate::error::ApiError;

/// Roles the cockpit knows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles {
    pub admin: bool,
    pub manager: bool,
    pub sales: bool,
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub roles: Roles,
    /// `exp` as a Unix time.
    pub expires_at: i64,
}

impl Principal {
    /// Whether the caller sees the whole organisation (admin, manager).
    pub fn sees_org(&self) -> bool {
        self.roles.admin || self.roles.manager
    }

    /// Whose figures the caller gets for `?owner=`: `None` for the organisation, `Some(user)`
    /// for one user's leads. Admins and managers may name anyone; a sales user only themself.
    pub fn figures_owner(&self, requested: Option<&str>) -> Result<Option<String>, ApiError> {
        if self.sees_org() {
            return Ok(requested.map(str::to_owned));
        }
        if !self.roles.sales {
            return Err(ApiError::Forbidden(
                "the token carries none of the roles admin, manager, sales".to_owned(),
            ));
        }
        match requested {
            None => Ok(Some(self.user_id.clone())),
            Some(owner) if owner == self.user_id => Ok(Some(self.user_id.clone())),
            Some(_) => Err(ApiError::Forbidden(
                "a sales user sees only their own leads".to_owned(),
            )),
        }
    }

    /// Admins and managers only.
    pub fn require_org(&self) -> Result<(), ApiError> {
        if self.sees_org() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "only admin and manager may read this".to_owned(),
            ))
        }
    }
}

/// The caller named by verified `claims`: the user id from `user_claim`, the roles the cockpit
/// knows from either role claim (others ignored), `exp` as the expiry.
pub(super) fn principal_from_claims(
    claims: &Value,
    user_claim: &str,
) -> Result<Principal, AuthError> {
    let user_id = claims
        .get(user_claim)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|u| !u.is_empty() && u.chars().count() <= MAX_USER_ID_CHARS)
        .ok_or_else(|| AuthError::NoUser(user_claim.to_owned()))?
        .to_owned();
    let mut roles = Roles::default();
    let realm = claims.pointer("/realm_access/roles");
    let plain = claims.get("roles");
    for list in [realm, plain].into_iter().flatten() {
        let names: Vec<&str> = match list {
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            Value::String(s) => s.split([' ', ',']).collect(),
            _ => Vec::new(),
        };
        for name in names {
            match name.trim().to_ascii_lowercase().as_str() {
                "admin" => roles.admin = true,
                "manager" => roles.manager = true,
                "sales" => roles.sales = true,
                _ => {}
            }
        }
    }
    let expires_at = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    Ok(Principal {
        user_id,
        roles,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_rules() {
        let p = |admin, manager, sales| Principal {
            user_id: "u1".into(),
            roles: Roles {
                admin,
                manager,
                sales,
            },
            expires_at: 0,
        };
        assert_eq!(p(true, false, false).figures_owner(None).unwrap(), None);
        assert_eq!(
            p(false, true, false).figures_owner(Some("u2")).unwrap(),
            Some("u2".into())
        );
        assert_eq!(
            p(false, false, true).figures_owner(None).unwrap(),
            Some("u1".into())
        );
        assert_eq!(
            p(false, false, true).figures_owner(Some("u1")).unwrap(),
            Some("u1".into())
        );
        assert!(matches!(
            p(false, false, true).figures_owner(Some("u2")),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            p(false, false, false).figures_owner(None),
            Err(ApiError::Forbidden(_))
        ));
        assert!(p(false, false, true).require_org().is_err());
        assert!(p(false, true, false).require_org().is_ok());
    }
}
