//! Palisade key files.
//!
//! A key file is JSON, written with mode 0600 and never overwritten:
//!
//! ```json
//! {"format":"palisade-ed25519-v1","public_key":"<64 hex>","secret_seed":"<64 hex>"}
//! ```
//!
//! `secret_seed` is the RFC 8032 32-byte secret. Loading opens the file once
//! (`O_NOFOLLOW`: a symbolic link is refused) and checks what it opened, so
//! nothing can swap the file between the check and the read: it refuses
//! anything but a regular file, a file another user owns, a file that a
//! group or other users can read or write, a file whose public key does not
//! match its seed, and unknown formats. Secrets are zeroized on drop (the seed
//! text and bytes here; `SecretKey` itself zeroizes through ed25519-dalek).
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("node.key");
//! let key = palisade_keys::generate_key_file(&path).unwrap();
//! let loaded = palisade_keys::load_key_file(&path).unwrap();
//! assert_eq!(key.public(), loaded.public());
//! ```
#![forbid(unsafe_code)]

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use palisade_crypto::{hash, Domain, PublicKey, SecretKey};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// The `format` field of current key files.
pub const KEY_FORMAT: &str = "palisade-ed25519-v1";

/// Why a key file could not be written or loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Writing would replace an existing key.
    #[error("{0}: a file already exists there; refusing to overwrite a key")]
    Exists(PathBuf),
    /// Group or others may access the file.
    #[error("{path}: mode {mode:o} lets other users read the key; run `chmod 600 {path}`")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The path is a symbolic link (followed links could point anywhere).
    #[error("{0}: is a symbolic link; give the key file's own path")]
    Symlink(PathBuf),
    /// The path is not a regular file (or is implausibly large for a key file).
    #[error("{path}: not a key file: {reason}")]
    NotAFile {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        reason: String,
    },
    /// Another user owns the file.
    #[error("{path}: owned by uid {owner}, not by this user (uid {expected})")]
    Owner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The effective uid of this process.
        expected: u32,
    },
    /// The contents are not a key file.
    #[error("{path}: not a palisade key file: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

#[derive(Serialize, Deserialize)]
struct KeyFileJson {
    format: String,
    public_key: String,
    secret_seed: String,
}

impl Drop for KeyFileJson {
    fn drop(&mut self) {
        self.secret_seed.zeroize();
    }
}

/// A short, stable id of a public key for logs and file names: the first 8
/// bytes (16 hex chars) of its hash.
pub fn key_id(key: &PublicKey) -> String {
    hash(Domain::KeyId, &key.0).to_hex()[..16].to_string()
}

/// Generate a key from OS randomness and write it to `path` (mode 0600).
pub fn generate_key_file(path: &Path) -> Result<SecretKey, KeyError> {
    let key = SecretKey::generate(&mut rand_core::OsRng);
    write_key_file(path, &key)?;
    Ok(key)
}

/// Write `key` to a new file at `path` with mode 0600; never overwrites.
pub fn write_key_file(path: &Path, key: &SecretKey) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let seed = Zeroizing::new(key.seed());
    let json = KeyFileJson {
        format: KEY_FORMAT.to_string(),
        public_key: key.public().to_hex(),
        secret_seed: hex::encode(*seed),
    };
    let text = Zeroizing::new(serde_json::to_string(&json).expect("key json encodes"));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => KeyError::Exists(path.to_path_buf()),
            _ => io(e),
        })?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_all().map_err(io)
}

/// Largest key file read (a key file is about 180 bytes).
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Load a key file, refusing links, other owners, loose permissions and
/// inconsistent contents. The file is opened once; every check is on the
/// opened file.
pub fn load_key_file(path: &Path) -> Result<SecretKey, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let nofollow = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(nofollow.bits() as i32)
        .open(path)
        .map_err(|e| {
            // ELOOP: the last component is a symbolic link.
            if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                KeyError::Symlink(path.to_path_buf())
            } else {
                io(e)
            }
        })?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(KeyError::NotAFile {
            path: path.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    let expected = rustix::process::geteuid().as_raw();
    if meta.uid() != expected {
        return Err(KeyError::Owner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            expected,
        });
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(KeyError::NotAFile {
            path: path.to_path_buf(),
            reason: format!(
                "{} bytes, a key file has at most {MAX_KEY_FILE_BYTES}",
                meta.len()
            ),
        });
    }
    let mut text = Zeroizing::new(String::new());
    (&mut file)
        .take(MAX_KEY_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(io)?;
    let malformed = |reason: String| KeyError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let json: KeyFileJson = serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
    if json.format != KEY_FORMAT {
        return Err(malformed(format!(
            "format {:?}, expected {KEY_FORMAT:?}",
            json.format
        )));
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(&json.secret_seed, &mut seed[..])
        .map_err(|e| malformed(format!("secret_seed: {e} (want 64 hex chars)")))?;
    let key = SecretKey::from_seed(*seed);
    let public =
        PublicKey::from_hex(&json.public_key).map_err(|e| malformed(format!("public_key: {e}")))?;
    if public != key.public() {
        return Err(malformed(
            "public_key does not match secret_seed".to_string(),
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn round_trip_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        let key = generate_key_file(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_key_file(&path).unwrap().public(), key.public());
    }

    #[test]
    fn refuses_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        generate_key_file(&path).unwrap();
        assert!(matches!(generate_key_file(&path), Err(KeyError::Exists(_))));
    }

    #[test]
    fn refuses_group_or_world_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        generate_key_file(&path).unwrap();
        for mode in [0o640, 0o604, 0o660, 0o644] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            match load_key_file(&path) {
                Err(KeyError::Permissions { mode: m, .. }) => assert_eq!(m, mode),
                other => panic!("mode {mode:o}: {other:?}"),
            }
        }
    }

    #[test]
    fn refuses_mismatched_public_key_and_bad_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        let other = SecretKey::from_seed([9; 32]).public().to_hex();
        let text = format!(
            r#"{{"format":"{KEY_FORMAT}","public_key":"{other}","secret_seed":"{}"}}"#,
            hex::encode([1u8; 32])
        );
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_key_file(&path).unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");

        let path2 = dir.path().join("b.key");
        fs::write(
            &path2,
            r#"{"format":"pem","public_key":"","secret_seed":""}"#,
        )
        .unwrap();
        fs::set_permissions(&path2, fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_key_file(&path2).unwrap_err().to_string();
        assert!(err.contains("format"), "{err}");
    }

    #[test]
    fn refuses_a_symlink_even_to_a_good_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        generate_key_file(&path).unwrap();
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(
            matches!(load_key_file(&link), Err(KeyError::Symlink(p)) if p == link),
            "a symbolic link must be refused"
        );
        assert!(load_key_file(&path).is_ok());
    }

    #[test]
    fn refuses_what_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        match load_key_file(dir.path()) {
            Err(KeyError::NotAFile { .. }) => {}
            other => panic!("a directory: {other:?}"),
        }
    }

    #[test]
    fn refuses_a_file_of_another_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        generate_key_file(&path).unwrap();
        let (path, owner) = if rustix::process::geteuid().is_root() {
            // Root can hand its key file to `nobody`.
            std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
            (path, 65534)
        } else {
            // Anyone else finds a file of root's.
            (PathBuf::from("/etc/passwd"), 0)
        };
        match load_key_file(&path) {
            Err(KeyError::Owner { owner: o, .. }) => assert_eq!(o, owner),
            other => panic!("{}: {other:?}", path.display()),
        }
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let key = SecretKey::from_seed([0xab; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.contains(&hex::encode([0xab; 32])));
        assert!(!shown.contains("abab"));
    }
}
