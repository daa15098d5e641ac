//! Bootstrap tokens sealed at rest (AES-256-GCM), and the HMAC that NanoMDM's DDM forwarding
//! signs bodies with.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The key that seals bootstrap tokens. It lives outside the database file.
#[derive(Clone)]
pub struct SealingKey(Aes256Gcm);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

impl SealingKey {
    /// A key from 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(Aes256Gcm::new(bytes.into()))
    }

    /// Reads the key file, creating it (mode 0600) with a random key if absent.
    pub fn load_or_create(path: &std::path::Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) if bytes.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                Ok(Self::from_bytes(&key))
            }
            Ok(_) => Err(std::io::Error::other(format!(
                "{} is not a 32-byte key; move it away to create a new one (escrowed tokens are then lost)",
                path.display()
            ))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                std::io::Write::write_all(&mut options.open(path)?, &key)?;
                Ok(Self::from_bytes(&key))
            }
            Err(error) => Err(error),
        }
    }

    /// Nonce || ciphertext.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let nonce: [u8; 12] = rand::random();
        let mut out = nonce.to_vec();
        // Encryption with a fresh nonce and an in-memory buffer cannot fail.
        out.extend(
            self.0
                .encrypt(Nonce::from_slice(&nonce), plain)
                .unwrap_or_default(),
        );
        out
    }

    /// The plain token, or None if the sealed value was not made with this key.
    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 12 {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(12);
        self.0.decrypt(Nonce::from_slice(nonce), ciphertext).ok()
    }
}

/// Whether `signature` (base64 of HMAC-SHA256 over `body`) matches, in constant time.
pub fn verify_hmac(key: &[u8], body: &[u8], signature: &str) -> bool {
    use base64::Engine;
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The signature NanoMDM would send for `body`.
pub fn sign_hmac(key: &[u8], body: &[u8]) -> String {
    use base64::Engine;
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_tokens_open_only_with_their_key() {
        let key = SealingKey::from_bytes(&[7; 32]);
        let sealed = key.seal(b"bootstrap");
        assert_ne!(&sealed[12..], b"bootstrap");
        assert_eq!(key.open(&sealed).as_deref(), Some(&b"bootstrap"[..]));
        assert_eq!(SealingKey::from_bytes(&[8; 32]).open(&sealed), None);
    }

    #[test]
    fn hmac_round_trips_and_rejects_tampering() {
        let signature = sign_hmac(b"k", b"body");
        assert!(verify_hmac(b"k", b"body", &signature));
        assert!(!verify_hmac(b"k", b"bodx", &signature));
        assert!(!verify_hmac(b"other", b"body", &signature));
        assert!(!verify_hmac(b"k", b"body", "not base64!"));
    }
}
