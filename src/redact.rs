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

/// Whether an environment variable named `name` holds a credential: one of its
/// `_`-separated words is `SECRET`, `TOKEN`, `PASSWORD`, `PASSWD`, `KEY`, `SAS` or
/// `CREDENTIALS`, and it does not name where a credential is (`…_FILE`, `…_PATH`, `…_ID`, `…_URL`,
/// `…_DIR`, `…_NAME`). So `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
/// `AZURE_STORAGE_ACCOUNT_KEY`, `GOOGLE_SERVICE_ACCOUNT_KEY` and `PACH_AUTH_TOKEN` are, while
/// `AWS_ACCESS_KEY_ID` and `AWS_WEB_IDENTITY_TOKEN_FILE` are not.
pub fn is_credential_variable(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    let words: Vec<&str> = upper.split('_').collect();
    let secret_word = words.iter().any(|word| {
        matches!(
            *word,
            "SECRET" | "TOKEN" | "PASSWORD" | "PASSWD" | "KEY" | "SAS" | "CREDENTIALS"
        )
    });
    let names_a_place = matches!(
        words.last().copied(),
        Some("FILE" | "PATH" | "ID" | "URL" | "DIR" | "NAME")
    );
    secret_word && !names_a_place
}

/// Registers the values of the process's credential environment variables (see
/// [`is_credential_variable`]), so a script's `env("AWS_SECRET_ACCESS_KEY")` or an error that
/// quotes one is masked from the start, before any client loads it. Called once at start-up.
pub fn register_environment() {
    for (name, value) in std::env::vars_os() {
        if let (Some(name), Some(value)) = (name.to_str(), value.to_str())
            && is_credential_variable(name)
        {
            register(value);
        }
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
            out = mask_whole(&out, secret);
        }
    }
    out
}

/// Whether `c` continues a word a secret would have to be cut out of (a name, a path
/// segment): letters, digits, `-` and `_`.
fn continues_word(c: char) -> bool {
    c.is_alphanumeric() || c == '-' || c == '_'
}

/// `text` with each whole occurrence of `secret` masked: one not glued to more of a word on
/// either side, so a path that happens to contain a secret's text (`/tmp/ankus-sandbox-x1/`
/// for the token `ankus-sandbox`) is left as it is.
fn mask_whole(text: &str, secret: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(secret) {
        // What stood before it: in the unscanned rest, or at the end of what is done.
        let before = rest[..at].chars().last().or_else(|| out.chars().last());
        let after = rest[at + secret.len()..].chars().next();
        let glued = before.is_some_and(continues_word) || after.is_some_and(continues_word);
        out.push_str(&rest[..at]);
        out.push_str(if glued { secret } else { MASK });
        rest = &rest[at + secret.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_variables_are_told_from_the_places_that_name_them() {
        for name in [
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AZURE_STORAGE_ACCOUNT_KEY",
            "AZURE_STORAGE_SAS_KEY",
            "AZURE_CLIENT_SECRET",
            "GOOGLE_SERVICE_ACCOUNT_KEY",
            "PACH_AUTH_TOKEN",
            "PACHD_ROOT_TOKEN",
        ] {
            assert!(is_credential_variable(name), "{name}");
        }
        for name in [
            "AWS_ACCESS_KEY_ID",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "GOOGLE_APPLICATION_CREDENTIALS_PATH",
            "AWS_REGION",
            "KEYBOARD",
            "HOME",
        ] {
            assert!(!is_credential_variable(name), "{name}");
        }
    }

    #[test]
    fn a_secret_is_masked_only_where_it_stands_whole_not_inside_a_path_or_a_name() {
        register("ankus-sandbox-token");
        assert_eq!(
            redact("/tmp/ankus-sandbox-token-ceD44Y/backup.dump"),
            "/tmp/ankus-sandbox-token-ceD44Y/backup.dump"
        );
        assert_eq!(
            redact("my-ankus-sandbox-token and xankus-sandbox-token"),
            "my-ankus-sandbox-token and xankus-sandbox-token"
        );
        assert_eq!(
            redact(
                "Bearer ankus-sandbox-token, token=ankus-sandbox-token \"ankus-sandbox-token\" /ankus-sandbox-token/"
            ),
            "Bearer ***, token=*** \"***\" /***/"
        );
    }

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
