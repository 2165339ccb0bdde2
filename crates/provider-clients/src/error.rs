use std::path::PathBuf;

/// Why a provider could not be set up (secrets, TLS, configuration). Request-time upstream
/// failures are not errors: they are OpenAI-style 502/504 responses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The environment variable named by a `secret_key_ref` is not set.
    #[error("environment variable `{name}` is not set")]
    SecretEnvNotSet {
        /// Variable name.
        name: String,
    },
    /// The environment variable is set but is not valid unicode.
    #[error("environment variable `{name}` is not valid unicode")]
    SecretEnvNotUnicode {
        /// Variable name.
        name: String,
    },
    /// The secret file cannot be read.
    #[error("secret file `{}` cannot be read", path.display())]
    SecretFileUnreadable {
        /// File path.
        path: PathBuf,
        /// The I/O error (it never contains the file's content).
        #[source]
        source: std::io::Error,
    },
    /// The secret file is not valid UTF-8.
    #[error("secret file `{}` is not valid utf-8", path.display())]
    SecretFileNotUtf8 {
        /// File path.
        path: PathBuf,
    },
    /// The secret resolved to an empty string.
    #[error("secret from {origin} is empty")]
    SecretEmpty {
        /// `environment variable `X`` or `file `P``.
        origin: String,
    },
    /// The secret cannot be sent in an HTTP header (control characters).
    #[error("secret from {origin} contains characters not allowed in an http header")]
    SecretNotHeaderSafe {
        /// `environment variable `X`` or `file `P``.
        origin: String,
    },
    /// A provider's key could not be resolved and its `on_missing_key` is `fail`.
    #[error("provider `{provider}`: cannot resolve its key: {source}")]
    MissingKey {
        /// Provider name.
        provider: String,
        /// Why (names the variable or file, never a value).
        #[source]
        source: Box<ProviderError>,
    },
    /// The provider's `base_url` is not an absolute http(s) URL.
    #[error("provider `{provider}`: invalid base_url `{base_url}`: {reason}")]
    InvalidBaseUrl {
        /// Provider name.
        provider: String,
        /// The configured URL.
        base_url: String,
        /// What is wrong.
        reason: String,
    },
    /// The TLS client could not be configured.
    #[error("provider `{provider}`: tls setup failed: {source}")]
    Tls {
        /// Provider name.
        provider: String,
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },
    /// Neither the bundled nor the system root certificates could be loaded.
    #[error("provider `{provider}`: no usable tls root certificates")]
    NoRootCertificates {
        /// Provider name.
        provider: String,
    },
    /// The provider lists no models.
    #[error("provider `{provider}`: no models configured")]
    NoModels {
        /// Provider name.
        provider: String,
    },
    /// Two providers have the same name.
    #[error("provider `{provider}` is configured twice")]
    DuplicateProvider {
        /// Provider name.
        provider: String,
    },
    /// The mock upstream server could not bind its address.
    #[error("mock upstream cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
