//! The secrets this process has loaded (session tokens, S3 secret keys and session tokens,
//! kube bearer tokens, enterprise activation codes, generated root tokens), and the one
//! function that hides them: everything ankus writes (logs, prints, plans, errors, JSON
//! output, journals) passes through [`redact`]. Clients register a secret where they load it;
//! they never need to know where output goes.

use std::sync::{OnceLock, RwLock};

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Secrets shorter than this are not registered: masking every occurrence of a two-letter
/// string would wreck the output without hiding anything.
pub const MIN_LENGTH: usize = 6;

fn registry() -> &'static RwLock<Vec<String>> {
    static SECRETS: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| RwLock::new(Vec::new()))
}

/// Remembers `secret` so [`redact`] hides it from now on.
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_LENGTH {
        return;
    }
    let mut secrets = registry()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !secrets.iter().any(|known| known == secret) {
        secrets.push(secret.to_owned());
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|known| std::cmp::Reverse(known.len()));
    }
}

/// `text` with every registered secret replaced by `***`.
pub fn redact(text: &str) -> String {
    let secrets = registry()
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = text.to_owned();
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_masked_and_short_ones_ignored() {
        register("tok-5f1c2e9a");
        register("tok-5f1c2e9a-longer");
        register("abc");
        assert_eq!(
            redact("a tok-5f1c2e9a-longer b tok-5f1c2e9a c abc"),
            "a *** b *** c abc"
        );
    }
}
