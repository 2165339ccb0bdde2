use std::fmt;

use policy_engine::SecretRef;

use crate::ProviderError;

/// A secret value (an upstream API key, a token). `Debug` and `Display` print `*****`;
/// it implements no `Serialize`, so it cannot end up in a log line, a metric or the audit
/// chain by accident. Read it with [`Secret::expose`] only where it is sent.
///
/// ```
/// let key = provider_clients::Secret::new("not-a-real-key");
/// assert_eq!(format!("{key:?} {key}"), "***** *****");
/// ```
///
/// ```compile_fail
/// fn serializable<T: serde::Serialize>() {}
/// serializable::<provider_clients::Secret>();
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value. Call only where the secret is used (e.g. an `Authorization` header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

/// Where a secret comes from, for messages: ``environment variable `X` `` or ``file `P` ``.
pub(crate) fn describe(secret_ref: &SecretRef) -> String {
    match secret_ref {
        SecretRef::Env(name) => format!("environment variable `{name}`"),
        SecretRef::File(path) => format!("file `{}`", path.display()),
    }
}

/// Reads a secret: the environment variable, or the file with one trailing newline
/// (`\n` or `\r\n`) trimmed. An empty value is an error. Errors name the variable or file,
/// never the value.
pub fn resolve_secret(secret_ref: &SecretRef) -> Result<Secret, ProviderError> {
    let value = match secret_ref {
        SecretRef::Env(name) => match std::env::var(name) {
            Ok(v) => v,
            Err(std::env::VarError::NotPresent) => {
                return Err(ProviderError::SecretEnvNotSet { name: name.clone() });
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(ProviderError::SecretEnvNotUnicode { name: name.clone() });
            }
        },
        SecretRef::File(path) => {
            let bytes =
                std::fs::read(path).map_err(|source| ProviderError::SecretFileUnreadable {
                    path: path.clone(),
                    source,
                })?;
            let mut s = String::from_utf8(bytes)
                .map_err(|_| ProviderError::SecretFileNotUtf8 { path: path.clone() })?;
            if s.ends_with('\n') {
                s.pop();
                if s.ends_with('\r') {
                    s.pop();
                }
            }
            s
        }
    };
    if value.is_empty() {
        return Err(ProviderError::SecretEmpty {
            origin: describe(secret_ref),
        });
    }
    Ok(Secret(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> String {
        format!("sk-{}", "x".repeat(40))
    }

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new(fixture());
        assert_eq!(format!("{s:?}"), "*****");
        assert_eq!(format!("{s}"), "*****");
        assert_eq!(format!("{:?}", Some(&s)), "Some(*****)");
        assert_eq!(s.expose(), fixture());
    }

    #[test]
    fn file_secret_has_trailing_newline_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{}\r\n", fixture())).unwrap();
        let s = resolve_secret(&SecretRef::File(path.clone())).unwrap();
        assert_eq!(s.expose(), fixture());
        std::fs::write(&path, format!("{}\n\n", fixture())).unwrap();
        let s = resolve_secret(&SecretRef::File(path)).unwrap();
        assert_eq!(s.expose(), format!("{}\n", fixture()));
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = resolve_secret(&SecretRef::File("/nonexistent/palisade/key".into())).unwrap_err();
        assert_eq!(
            e.to_string(),
            "secret file `/nonexistent/palisade/key` cannot be read"
        );
    }

    #[test]
    fn unset_env_names_the_variable() {
        let e = resolve_secret(&SecretRef::Env(
            "PALISADE_TEST_SURELY_UNSET_VARIABLE_4711".into(),
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable `PALISADE_TEST_SURELY_UNSET_VARIABLE_4711` is not set"
        );
    }

    #[test]
    fn empty_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "\n").unwrap();
        let e = resolve_secret(&SecretRef::File(path.clone())).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("secret from file `{}` is empty", path.display())
        );
    }
}
