//! Secrets at rest: passwords hashed with argon2id; API, login and share tokens are random and stored as
//! SHA-256 digests (they have 256 bits of entropy, so a slow hash buys nothing), compared in constant time.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest password `admin member add` accepts.
pub const MIN_PASSWORD_LEN: usize = 8;

pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).expect("argon2 with default params").to_string()
}

/// True if `password` matches the stored argon2 hash. A malformed stored hash never matches.
pub fn verify_password(password: &str, stored_hash: &str) -> bool {
    match PasswordHash::new(stored_hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Burns about the time of one verification, so that "no such member" and "wrong password" take equally long.
pub fn verify_password_dummy(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = DUMMY.get_or_init(|| hash_password("not a real password"));
    let _ = verify_password(password, hash);
}

/// A fresh token `PREFIX_<43 base64url chars>` (256 random bits) and its digest for storage.
pub fn new_token(prefix: &str) -> (String, Vec<u8>) {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(raw));
    let digest = hash_token(&token);
    (token, digest)
}

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub fn digests_equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip_and_wrong_password() {
        let h = hash_password("correct horse");
        assert!(h.starts_with("$argon2id$"), "argon2id expected, got {h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsE", &h));
        assert!(!verify_password("correct horse", "garbage"));
    }

    #[test]
    fn tokens_are_unique_prefixed_and_hashed() {
        let (a, ha) = new_token("cmdop");
        let (b, hb) = new_token("cmdop");
        assert_ne!(a, b);
        assert!(a.starts_with("cmdop_") && a.len() == 6 + 43);
        assert_eq!(ha, hash_token(&a));
        assert!(digests_equal(&ha, &hash_token(&a)));
        assert!(!digests_equal(&ha, &hb));
        assert_eq!(ha.len(), 32);
    }
}
