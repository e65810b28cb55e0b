//! The AWS account a call acts for, and the rule that resources belong to one.
//!
//! Every volume, snapshot, image and instance records its owner's account id when it is made.
//! Each control-plane method that names or lists resources takes the caller's [`Account`]
//! explicitly: lists show only the caller's resources, and another account's resource is
//! `*.NotFound` to it, exactly like one that does not exist (AWS does not reveal that an id
//! belongs to someone else). The AWS endpoint's caller is the account of the key that signed
//! the request; gRPC and `ebsctl` act for [`Account::LOCAL`].

use std::fmt;

use crate::catalog::LOCAL_ACCOUNT_ID;

/// A 12-digit AWS account id. `Copy`: it is passed by value into every call.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Account([u8; 12]);

impl Account {
    /// The account of gRPC callers, of resources made before accounts existed, and of
    /// unauthenticated local AWS callers whose key id names none.
    pub const LOCAL: Account = {
        let b = LOCAL_ACCOUNT_ID.as_bytes();
        let mut a = [0u8; 12];
        let mut i = 0;
        while i < 12 {
            a[i] = b[i];
            i += 1;
        }
        Account(a)
    };

    /// `id` if it is 12 ASCII digits.
    pub fn parse(id: &str) -> Option<Account> {
        let b: [u8; 12] = id.as_bytes().try_into().ok()?;
        b.iter().all(u8::is_ascii_digit).then_some(Account(b))
    }

    /// The id as AWS prints it (`OwnerId`).
    pub fn id(&self) -> &str {
        // Invariant: only `parse` and `LOCAL` build an Account, both from ASCII digits.
        std::str::from_utf8(&self.0).expect("account ids are ASCII digits")
    }

    /// Whether a resource recorded with `owner_id` is this account's.
    pub fn owns(&self, owner_id: &str) -> bool {
        owner_id.as_bytes() == self.0
    }

    /// Whether an `Owner`/`OwnerId` request value names this account (`self` or its id).
    pub fn is_named_by(&self, owner: &str) -> bool {
        owner == "self" || self.owns(owner)
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Account({})", self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_takes_twelve_digits_only() {
        assert_eq!(Account::parse("000000000000"), Some(Account::LOCAL));
        assert_eq!(Account::parse("123456789012").unwrap().id(), "123456789012");
        for bad in [
            "",
            "12345678901",
            "1234567890123",
            "12345678901a",
            "１２３４５６７８９０１",
        ] {
            assert_eq!(Account::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ownership_and_names() {
        let a = Account::parse("111111111111").unwrap();
        assert!(a.owns("111111111111"));
        assert!(!a.owns("000000000000"));
        assert!(!a.owns("11111111111"));
        assert!(a.is_named_by("self"));
        assert!(a.is_named_by("111111111111"));
        assert!(!a.is_named_by("amazon"));
        assert_eq!(Account::LOCAL.to_string(), "000000000000");
    }
}
