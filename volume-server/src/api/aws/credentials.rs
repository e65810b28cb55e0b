//! The keys the AWS endpoint accepts (`--aws-credentials`) and the account each acts for.
//!
//! The file is the aws CLI's shared-credentials format: `[profile]` sections of `key = value`
//! lines, each with `aws_access_key_id`, `aws_secret_access_key` and `aws_account_id`. Without a
//! file the endpoint serves local use: any key goes, a 12-digit key id is taken as the account id
//! and any other key acts for account `000000000000`.

use std::collections::HashMap;
use std::path::Path;

use crate::control::Account;

/// One key.
#[derive(Clone)]
pub struct Key {
    /// `AKIA…` (any string).
    pub access_key_id: String,
    /// The secret it signs with. Never logged (see the `Debug` impl).
    pub secret: String,
    /// The account it acts for.
    pub account: Account,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("access_key_id", &self.access_key_id)
            .field("secret", &"<redacted>")
            .field("account", &self.account)
            .finish()
    }
}

/// Which keys are accepted.
#[derive(Debug, Clone)]
pub enum Keys {
    /// Any key, unverified (loopback only).
    Local,
    /// These keys, by access key id; requests must be signed with one.
    Listed(HashMap<String, Key>),
}

impl Keys {
    /// Reads a shared-credentials file.
    pub fn load(path: &Path) -> Result<Keys, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses a shared-credentials file's text.
    pub fn parse(text: &str) -> Result<Keys, String> {
        let mut profiles: Vec<(String, HashMap<String, String>)> = vec![];
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                profiles.push((name.trim().to_string(), HashMap::new()));
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(format!("line {}: expected `key = value`", n + 1));
            };
            let Some((_, settings)) = profiles.last_mut() else {
                return Err(format!("line {}: a setting before any [profile]", n + 1));
            };
            settings.insert(k.trim().to_lowercase(), v.trim().to_string());
        }
        let mut keys = HashMap::new();
        for (name, s) in profiles {
            let get = |k: &str| {
                s.get(k)
                    .filter(|v| !v.is_empty())
                    .cloned()
                    .ok_or_else(|| format!("profile [{name}] has no {k}"))
            };
            let account = Account::parse(&get("aws_account_id")?)
                .ok_or_else(|| format!("profile [{name}]: aws_account_id must be 12 digits"))?;
            let key = Key {
                access_key_id: get("aws_access_key_id")?,
                secret: get("aws_secret_access_key")?,
                account,
            };
            keys.insert(key.access_key_id.clone(), key);
        }
        if keys.is_empty() {
            return Err("no profile with a key".into());
        }
        Ok(Keys::Listed(keys))
    }
}

/// The account an unverified (local) key acts for: a 12-digit key id names it, any other key
/// acts for [`Account::LOCAL`].
pub fn local_account(access_key_id: &str) -> Account {
    Account::parse(access_key_id).unwrap_or(Account::LOCAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_shared_credentials_format() {
        let keys = Keys::parse(
            "# two accounts\n[default]\naws_access_key_id = AKIA1\naws_secret_access_key=s1\naws_account_id = 111111111111\n\n[other]\naws_access_key_id=AKIA2\naws_secret_access_key = s2\naws_account_id=222222222222\n",
        )
        .unwrap();
        let Keys::Listed(k) = keys else { panic!() };
        assert_eq!(k["AKIA1"].account.id(), "111111111111");
        assert_eq!(k["AKIA2"].secret, "s2");
        assert!(!format!("{:?}", k["AKIA2"]).contains("s2"));
        assert!(Keys::parse("[a]\naws_access_key_id=x\naws_secret_access_key=y\n").is_err());
        assert!(
            Keys::parse("[a]\naws_access_key_id=x\naws_secret_access_key=y\naws_account_id=12\n")
                .is_err()
        );
        assert!(Keys::parse("aws_access_key_id=x\n").is_err());
        assert!(Keys::parse("").is_err());
    }

    #[test]
    fn local_keys_name_their_account() {
        assert_eq!(local_account("123456789012").id(), "123456789012");
        assert_eq!(local_account("test"), Account::LOCAL);
        assert_eq!(local_account("1234567890123"), Account::LOCAL);
    }
}
