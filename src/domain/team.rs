//! Who someone is in chat and which team that makes them part of. Teams are
//! bound to chat roles per platform; the same person may hold roles on several
//! platforms, and an adapter only reports the roles of the platform it serves.

use super::names::TeamName;
use super::quota::Quota;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

/// A chat platform Slipway speaks on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Console,
    Discord,
    Matrix,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Console => "console",
            Platform::Discord => "discord",
            Platform::Matrix => "matrix",
        }
    }

    pub fn parse(raw: &str) -> Option<Platform> {
        match raw {
            "console" => Some(Platform::Console),
            "discord" => Some(Platform::Discord),
            "matrix" => Some(Platform::Matrix),
            _ => None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The person behind a chat event, as the adapter saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub platform: Platform,
    /// The platform's stable id (Discord snowflake, Matrix user id, console name).
    pub user_id: String,
    /// A name to show in replies and cards.
    pub display: String,
    /// Role ids (Discord), rooms / power levels (Matrix) or console roles.
    pub roles: Vec<String>,
}

impl Actor {
    /// The key under which this person's rate limit and ownership are kept.
    pub fn key(&self) -> String {
        format!("{}:{}", self.platform, self.user_id)
    }
}

/// How a request over quota is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverQuota {
    /// It waits for a team admin's approval (the default).
    #[default]
    Approval,
    /// It is refused outright.
    Refuse,
}

/// A range of addresses a team's static containers draw from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpPool {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

impl IpPool {
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        (u32::from(self.first)..=u32::from(self.last)).map(Ipv4Addr::from)
    }
}

/// A team as configured: who is in it, who decides for it, what it may use.
#[derive(Debug, Clone)]
pub struct Team {
    pub name: TeamName,
    /// platform → roles whose holders are members.
    pub members: BTreeMap<Platform, Vec<String>>,
    /// platform → roles whose holders are admins (admins are members too).
    pub admins: BTreeMap<Platform, Vec<String>>,
    pub quota: Quota,
    pub over_quota: OverQuota,
    /// Inclusive VMID range the team's containers are created in.
    pub vmids: (u32, u32),
    pub ip_pool: Option<IpPool>,
    /// Public keys that may log in to every environment of the team.
    pub ssh_keys: Vec<super::ssh_key::SshKey>,
}

impl Team {
    fn holds(map: &BTreeMap<Platform, Vec<String>>, actor: &Actor) -> bool {
        map.get(&actor.platform).is_some_and(|roles| {
            roles
                .iter()
                .any(|r| actor.roles.contains(r) || *r == actor.user_id)
        })
    }

    pub fn is_admin(&self, actor: &Actor) -> bool {
        Self::holds(&self.admins, actor)
    }

    pub fn is_member(&self, actor: &Actor) -> bool {
        self.is_admin(actor) || Self::holds(&self.members, actor)
    }
}

/// The teams an actor belongs to, in configuration order.
pub fn teams_of<'a>(teams: &'a [Team], actor: &Actor) -> Vec<&'a Team> {
    teams.iter().filter(|t| t.is_member(actor)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn team() -> Team {
        Team {
            name: TeamName("web".into()),
            members: BTreeMap::from([(Platform::Discord, vec!["111".into()])]),
            admins: BTreeMap::from([(Platform::Discord, vec!["999".into()])]),
            quota: Quota::default(),
            over_quota: OverQuota::Approval,
            vmids: (200, 299),
            ip_pool: None,
            ssh_keys: Vec::new(),
        }
    }

    fn actor(roles: &[&str]) -> Actor {
        Actor {
            platform: Platform::Discord,
            user_id: "42".into(),
            display: "bob".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn a_member_role_makes_a_member_but_not_an_admin() {
        let t = team();
        assert!(t.is_member(&actor(&["111"])));
        assert!(!t.is_admin(&actor(&["111"])));
    }

    #[test]
    fn an_admin_is_also_a_member() {
        let t = team();
        assert!(t.is_member(&actor(&["999"])));
        assert!(t.is_admin(&actor(&["999"])));
    }

    #[test]
    fn roles_of_another_platform_do_not_count() {
        let t = team();
        let mut a = actor(&["111"]);
        a.platform = Platform::Matrix;
        assert!(!t.is_member(&a));
    }

    #[test]
    fn a_user_id_can_be_bound_directly() {
        let mut t = team();
        t.members.insert(Platform::Discord, vec!["42".into()]);
        assert!(t.is_member(&actor(&[])));
    }
}
