//! The tuning database (DESIGN §3): for one device, which candidate won for each problem.
//!
//! One JSON file per device identity, `<cache dir>/tuning/<platform>-<name>-<arch>.json`. The
//! file holds the full fingerprint (device name, arch, driver version, kernel compiler version,
//! rocmforge version); the file name leaves the versions out on purpose, so that after a driver
//! or compiler upgrade the old file is found and reported stale instead of silently starting
//! over. Entries are keyed by problem (op and shape) and shape bucket (the phases the kernel
//! runs in) and carry the checksum of the candidate set they were chosen among: a changed
//! candidate list or default kernel makes the entry stale, and stale entries are never applied.
//! Files are written to a temporary name and renamed, so a reader sees a whole file or none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::TuneError;
use crate::backend::gpu::DeviceInfo;
use crate::codegen::cache::{write_atomic, CACHE_DIR_ENV};

/// Bump when the file layout changes; files of another format read as corrupt.
pub const FORMAT_VERSION: u32 = 1;

/// What a tuning result is valid for: the device and everything that changes the kernels'
/// machine code or their speed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub platform: String,
    pub device: String,
    /// Full target string (`sm_90`, `gfx90a:sramecc+:xnack-`).
    pub arch: String,
    pub driver: String,
    pub compiler: String,
    pub rocmforge: String,
}

impl Fingerprint {
    /// The fingerprint of `info`'s device with kernels from a compiler of `compiler_version`.
    pub fn new(info: &DeviceInfo, compiler_version: &str) -> Fingerprint {
        Fingerprint {
            platform: info.platform.name().to_string(),
            device: info.name.clone(),
            arch: info.arch.clone(),
            driver: info.driver_version.clone(),
            compiler: compiler_version.to_string(),
            rocmforge: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// Platform, device name and arch, with every character outside `[A-Za-z0-9._-]` as `_`.
    pub fn file_name(&self) -> String {
        let raw = format!("{}-{}-{}", self.platform, self.device, self.arch);
        let safe: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{safe}.json")
    }

    pub fn describe(&self) -> String {
        format!(
            "{} {} ({}), driver {}, compiler {}, rocmforge {}",
            self.platform, self.device, self.arch, self.driver, self.compiler, self.rocmforge
        )
    }
}

/// The checksum naming a problem's candidate set: the problem, its candidates' knobs in order
/// and the default kernel's source. Any change to the list or to the template makes the old
/// choice stale.
pub fn candidate_set_checksum(
    problem: &str,
    candidate_knobs: &[String],
    default_source: &str,
) -> String {
    let mut hasher = Sha256::new();
    // Every field is length-prefixed so that no two different inputs hash the same bytes.
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(b"rocmforge candidate set v1");
    field(problem.as_bytes());
    field(&(candidate_knobs.len() as u64).to_le_bytes());
    for knobs in candidate_knobs {
        field(knobs.as_bytes());
    }
    field(default_source.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One tuned problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub problem: String,
    /// The phases the kernel was timed in (`decode`, `prefill`, `decode+prefill`).
    pub bucket: String,
    /// [`candidate_set_checksum`] of the candidates the winner was chosen among.
    pub candidate_set: String,
    /// Index of the winner; 0 when the default stayed best.
    pub candidate: usize,
    pub candidates: usize,
    /// The winner's knobs, as JSON (for people reading the file).
    pub knobs: String,
    /// Microseconds per call of the default and of the winner, summed over the bucket's phases.
    pub default_us: f64,
    pub best_us: f64,
}

impl Entry {
    pub fn key(&self) -> String {
        entry_key(&self.problem, &self.bucket)
    }
}

/// The key of a problem's entry in its shape bucket.
pub fn entry_key(problem: &str, bucket: &str) -> String {
    format!("{problem} @ {bucket}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuningDb {
    pub format: u32,
    pub fingerprint: Fingerprint,
    pub entries: BTreeMap<String, Entry>,
}

/// What reading a database for a device found.
#[derive(Debug, Clone, PartialEq)]
pub enum DbRead {
    /// No file: nothing tuned on this device yet.
    Missing,
    Ready(TuningDb),
    /// Unreadable, unparsable or inconsistent: ignored.
    Corrupt(String),
    /// Made on another device, driver, compiler or rocmforge version: ignored.
    Foreign(Box<Fingerprint>),
}

impl TuningDb {
    pub fn new(fingerprint: Fingerprint) -> TuningDb {
        TuningDb {
            format: FORMAT_VERSION,
            fingerprint,
            entries: BTreeMap::new(),
        }
    }

    /// Adds or replaces the entry of the entry's problem and bucket.
    pub fn insert(&mut self, entry: Entry) {
        self.entries.insert(entry.key(), entry);
    }

    pub fn get(&self, problem: &str, bucket: &str) -> Option<&Entry> {
        self.entries.get(&entry_key(problem, bucket))
    }

    /// Writes the file atomically (temporary name, then rename).
    pub fn save(&self, path: &Path) -> Result<(), TuneError> {
        let json = serde_json::to_string_pretty(self).expect("the database is plain data");
        write_atomic(path, json.as_bytes()).map_err(|source| TuneError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads the database at `path` for the device `current` describes.
    pub fn read(path: &Path, current: &Fingerprint) -> DbRead {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return DbRead::Missing,
            Err(e) => return DbRead::Corrupt(format!("cannot read it: {e}")),
        };
        let db: TuningDb = match serde_json::from_slice(&bytes) {
            Ok(db) => db,
            Err(e) => return DbRead::Corrupt(format!("not a tuning database: {e}")),
        };
        if db.format != FORMAT_VERSION {
            return DbRead::Corrupt(format!(
                "format {}, this rocmforge reads format {FORMAT_VERSION}",
                db.format
            ));
        }
        if let Err(reason) = db.check_entries() {
            return DbRead::Corrupt(reason);
        }
        if &db.fingerprint != current {
            return DbRead::Foreign(Box::new(db.fingerprint));
        }
        DbRead::Ready(db)
    }

    /// Every entry under its own key, with a winner among its candidates and finite times.
    fn check_entries(&self) -> Result<(), String> {
        for (key, e) in &self.entries {
            let bad = |what: &str| Err(format!("entry '{key}': {what}"));
            if *key != e.key() {
                return bad("stored under another problem's key");
            }
            if e.candidate >= e.candidates {
                return bad("winner index outside its candidate set");
            }
            if e.candidate_set.len() != 64
                || !e.candidate_set.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return bad("candidate-set checksum is not 64 hex digits");
            }
            if !(e.default_us.is_finite() && e.best_us.is_finite()) {
                return bad("times are not finite");
            }
        }
        Ok(())
    }
}

/// `$ROCMFORGE_CACHE_DIR/tuning`, else the platform cache folder + `rocmforge/tuning`.
pub fn tuning_dir() -> Result<PathBuf, TuneError> {
    match std::env::var_os(CACHE_DIR_ENV).filter(|d| !d.is_empty()) {
        Some(dir) => Ok(PathBuf::from(dir).join("tuning")),
        None => Ok(dirs::cache_dir()
            .ok_or(TuneError::NoCacheDir)?
            .join("rocmforge")
            .join("tuning")),
    }
}

/// Where the database of the device `fingerprint` names lives.
pub fn db_path(fingerprint: &Fingerprint) -> Result<PathBuf, TuneError> {
    Ok(tuning_dir()?.join(fingerprint.file_name()))
}
