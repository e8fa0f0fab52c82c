//! Users: the username and password rules, and the user as the API shows it.

use serde::Serialize;

use super::{Timestamp, UserId};

/// A username: 3–32 of `[a-z0-9_]`. Usernames are case-insensitive: input is
/// lowercased, and the lowercase form is the one stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let lower = raw.to_ascii_lowercase();
        let len = lower.chars().count();
        if !(3..=32).contains(&len) {
            return Err("must be 3 to 32 characters long".into());
        }
        if !lower
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err("may contain only letters a-z, digits 0-9 and underscores".into());
        }
        Ok(Username(lower))
    }

    /// For values read back from a store, which only ever holds parsed usernames.
    pub fn from_trusted(s: String) -> Self {
        Username(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as given at registration: at least 8 characters. It only ever
/// leaves this type as an Argon2id hash.
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 8;
    /// Bounds the hashing work an attacker can ask for.
    pub const MAX_BYTES: usize = 1024;

    pub fn parse(raw: String) -> Result<Self, String> {
        super::refuse_control_characters(&raw)?;
        if raw.chars().count() < Self::MIN_CHARS {
            return Err(format!(
                "must be at least {} characters long",
                Self::MIN_CHARS
            ));
        }
        if raw.len() > Self::MAX_BYTES {
            return Err(format!("must be at most {} bytes long", Self::MAX_BYTES));
        }
        Ok(Password(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct User {
    #[schema(value_type = String, format = Uuid)]
    pub id: UserId,
    #[schema(value_type = String, example = "alice")]
    pub username: Username,
    #[serde(serialize_with = "super::timestamp::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// What an account may do beyond its own content (PRODUCT.md §3 Safety):
/// moderators work the report queue, admins also grant roles.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    User,
    Moderator,
    Admin,
}

impl Role {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "user" => Ok(Role::User),
            "moderator" => Ok(Role::Moderator),
            "admin" => Ok(Role::Admin),
            _ => Err("must be one of user, moderator, admin".into()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }

    /// Moderators and admins act on reports.
    pub fn moderates(self) -> bool {
        matches!(self, Role::Moderator | Role::Admin)
    }

    /// Only plain users: a moderator could otherwise lock out the admins
    /// (and one another); staff lose their role first.
    pub fn may_be_suspended(self) -> bool {
        self == Role::User
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(Username::parse("Alice_1").unwrap().as_str(), "alice_1");
        assert!(Username::parse("ab").is_err());
        assert!(Username::parse(&"a".repeat(33)).is_err());
        assert!(Username::parse("al ice").is_err());
        assert!(Username::parse("élan").is_err());
    }

    #[test]
    fn roles_round_trip_and_only_staff_moderate() {
        for role in [Role::User, Role::Moderator, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        assert!(Role::parse("root").is_err());
        assert!(!Role::User.moderates());
        assert!(Role::Moderator.moderates() && Role::Admin.moderates());
    }

    #[test]
    fn passwords() {
        assert!(Password::parse("1234567".into()).is_err());
        assert!(Password::parse("12345678".into()).is_ok());
        assert!(Password::parse("ääääääää".into()).is_ok());
        assert!(Password::parse("x".repeat(2000)).is_err());
    }
}
