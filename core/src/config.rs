//! Per-server settings the protocol engine needs: accepted roles and what GET_VALUES reports.

use crate::wire::Role;
use core::ops::BitOr;

/// A set of FastCGI roles the server accepts; a BEGIN_REQUEST for any other role is
/// answered with END_REQUEST `UNKNOWN_ROLE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    pub const RESPONDER: Self = Self(1);
    pub const AUTHORIZER: Self = Self(2);
    pub const FILTER: Self = Self(4);
    pub const ALL: Self = Self(7);

    /// Whether `role` is in the set (roles FastCGI 1.0 does not define never are).
    pub const fn contains(self, role: Role) -> bool {
        let bit = match role {
            Role::Responder => 1,
            Role::Authorizer => 2,
            Role::Filter => 4,
            Role::Other(_) => 0,
        };
        self.0 & bit != 0
    }
}

impl BitOr for Roles {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// Protocol settings shared by every connection of a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Roles this server plays. Default: Responder only.
    pub roles: Roles,
    /// Connections the transport accepts at once, reported as FCGI_MAX_CONNS (and, times
    /// the requests per connection, as FCGI_MAX_REQS). Default: 1024.
    pub max_conns: u32,
}

impl Config {
    /// Responder only, 1024 connections.
    pub const fn new() -> Self {
        Self { roles: Roles::RESPONDER, max_conns: 1024 }
    }

    /// With the roles this server plays.
    pub const fn with_roles(mut self, roles: Roles) -> Self {
        self.roles = roles;
        self
    }

    /// With `max_conns` reported as FCGI_MAX_CONNS.
    pub const fn with_max_conns(mut self, max_conns: u32) -> Self {
        self.max_conns = max_conns;
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_roles() {
        assert!(Roles::RESPONDER.contains(Role::Responder));
        assert!(!Roles::RESPONDER.contains(Role::Filter));
        let two = Roles::RESPONDER | Roles::FILTER;
        assert!(two.contains(Role::Filter) && !two.contains(Role::Authorizer));
        assert!(!Roles::ALL.contains(Role::Other(4)));
        assert!(Roles::ALL.contains(Role::Authorizer));
    }
}
