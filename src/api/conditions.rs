//! Condition types and reasons: API contract, not implementation detail. The printer columns,
//! the Argo CD health checks (`argocd/`), the dashboard and the alert rules read them, and users
//! script against them, so a rename is a breaking change.

/// `MLTenant` conditions. `Ready` is True when the three below it are.
pub const READY: &str = "Ready";
pub const NAMESPACES_READY: &str = "NamespacesReady";
pub const SECRETS_SYNCED: &str = "SecretsSynced";
pub const ACCESS_GRANTED: &str = "AccessGranted";
/// True when a distributed credential expires within 14 days (or has expired).
pub const CREDENTIALS_EXPIRING: &str = "CredentialsExpiring";

/// The `SealedBundle` condition: the bundle opens for the consumer its scope names.
pub const DECRYPTABLE: &str = "Decryptable";

/// The `status` of a condition that holds.
pub const TRUE: &str = "True";
pub const FALSE: &str = "False";

/// Condition reasons (several are also the reasons of the Event reporting the same thing).
pub mod reason {
    // Ready, NamespacesReady
    pub const READY: &str = "Ready";
    pub const CREATED: &str = "Created";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const TERMINATING: &str = "Terminating";
    pub const PROTECTED_NAMESPACE: &str = "ProtectedNamespace";
    pub const NAMESPACE_CONFLICT: &str = "NamespaceConflict";
    pub const NAMESPACE_REJECTED: &str = "NamespaceRejected";
    /// A namespace keeps a Pod Security level stricter than the spec asks: a tenant only
    /// ever tightens.
    pub const POD_SECURITY_KEPT: &str = "PodSecurityKept";
    /// The object (or a SealedBundle it names) holds a field the operator cannot read; Ready,
    /// SecretsSynced and Decryptable.
    pub const INVALID_OBJECT: &str = "InvalidObject";
    // SecretsSynced (and, for the bundle failures below, Decryptable)
    pub const SYNCED: &str = "Synced";
    pub const SECRET_CONFLICT: &str = "SecretConflict";
    pub const SECRET_REJECTED: &str = "SecretRejected";
    pub const REVOCATION_FAILED: &str = "RevocationFailed";
    pub const BUNDLE_NOT_FOUND: &str = "BundleNotFound";
    pub const SCOPE_MISMATCH: &str = "ScopeMismatch";
    pub const DECRYPTION_FAILED: &str = "DecryptionFailed";
    /// The sealing key a bundle needs is retired (`mltenant keys retire`): re-seal it, or
    /// un-retire the key.
    pub const KEY_RETIRED: &str = "KeyRetired";
    pub const INVALID_PAYLOAD: &str = "InvalidPayload";
    pub const UNSUPPORTED_TYPE: &str = "UnsupportedType";
    pub const RESERVED_METADATA: &str = "ReservedMetadata";
    pub const TOO_MANY_VALUES: &str = "TooManyValues";
    /// A field of the bundle outside the bounds of the CRD (stored under an older one).
    pub const OUT_OF_BOUNDS: &str = "OutOfBounds";
    // AccessGranted
    pub const GRANTED: &str = "Granted";
    pub const ACCESS_CONFLICT: &str = "AccessConflict";
    pub const ACCESS_REJECTED: &str = "AccessRejected";
    // CredentialsExpiring
    pub const EXPIRED: &str = "Expired";
    pub const EXPIRES_SOON: &str = "ExpiresSoon";
    pub const NOT_EXPIRING: &str = "NotExpiring";
    // Decryptable
    pub const DECRYPTABLE: &str = "Decryptable";
}

/// Reasons of Events that are not also a condition reason.
pub mod event {
    pub const NAMESPACE_ADOPTED: &str = "NamespaceAdopted";
    pub const NAMESPACE_RESTORED: &str = "NamespaceRestored";
    pub const NAMESPACE_RELEASED: &str = "NamespaceReleased";
    pub const NAMESPACE_DELETED: &str = "NamespaceDeleted";
    pub const SECRET_SYNCED: &str = "SecretSynced";
    pub const SECRET_REMOVED: &str = "SecretRemoved";
    /// A request about one child object was refused by the API server.
    pub const WRITE_REJECTED: &str = "WriteRejected";
    /// The operator hit a bug reconciling the object (a caught panic).
    pub const PANIC: &str = "Panic";
}
