//! Which pachd release a sandbox cluster impersonates: what GetVersion reports, which `Op1_x`
//! field Extract writes and which ones Restore accepts.

use std::fmt;
use std::str::FromStr;

/// A pachd release from 1.9 to 1.13 (the micro version is the last release of that minor line
/// unless given).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PachdVersion {
    /// 9 ..= 13.
    pub minor: u32,
    /// The patch release reported by GetVersion.
    pub micro: u32,
}

/// Why a version string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse pachd version '{0}': expected 1.9 … 1.13, optionally with a patch number")]
pub struct BadVersion(pub String);

impl crate::kind::Kinded for BadVersion {
    fn kind(&self) -> crate::kind::Kind {
        crate::kind::Kind::Usage
    }
}

impl PachdVersion {
    /// The oldest minor line the sandbox emulates.
    pub const OLDEST_MINOR: u32 = 9;
    /// The newest minor line the sandbox emulates.
    pub const NEWEST_MINOR: u32 = 13;

    /// The last release of a minor line (`1.11` → 1.11.9).
    pub fn latest(minor: u32) -> Option<PachdVersion> {
        let micro = match minor {
            9 => 12,
            10 => 5,
            11 => 9,
            12 => 5,
            13 => 4,
            _ => return None,
        };
        Some(PachdVersion { minor, micro })
    }

    /// pachd 1.13.4, the newest 1.x.
    pub fn v1_13() -> PachdVersion {
        PachdVersion {
            minor: 13,
            micro: 4,
        }
    }

    /// pachd 1.11.9, the default "old" cluster.
    pub fn v1_11() -> PachdVersion {
        PachdVersion {
            minor: 11,
            micro: 9,
        }
    }

    /// `1.11`.
    pub fn short(&self) -> String {
        format!("1.{}", self.minor)
    }

    /// Whether the auth ops (fields 11–17 of `Op1_x`) and the auth extract checks exist:
    /// 1.11.9 and later.
    pub fn has_auth_ops(&self) -> bool {
        self.minor > 11 || (self.minor == 11 && self.micro >= 9)
    }

    /// Whether cluster role bindings exist (1.11.0+).
    pub fn has_cluster_roles(&self) -> bool {
        self.minor >= 11
    }

    /// Whether CreatePipeline describes the output repo it creates ("Output repo for pipeline
    /// NAME."): 1.9.9 and later; the real 1.9.0 leaves the description empty.
    pub fn describes_output_repos(&self) -> bool {
        self.minor > 9 || self.micro >= 9
    }

    /// Whether Extract writes the storage as blocks (block + create_object ops) and the whole
    /// metadata: the `__spec__` and output repos, commits with provenance and sizes, every
    /// branch with its provenance, pipelines with their spec commits, and jobs. 1.9.6 and
    /// later; 1.9.0 – 1.9.5 write each object's bytes as object ops and only the input repos,
    /// their commits (parent, tree, ID, branch) after the pipelines.
    pub fn extracts_blocks_and_outputs(&self) -> bool {
        self.minor > 9 || self.micro >= 6
    }

    /// Whether Extract and ExtractPipeline copy a pipeline's `pod_spec` and `pod_patch`:
    /// 1.9.4 and later.
    pub fn extracts_pod_specs(&self) -> bool {
        self.minor > 9 || self.micro >= 4
    }

    /// Whether Restore refuses unknown and mixed op versions (1.10+) instead of skipping them.
    pub fn strict_op_versions(&self) -> bool {
        self.minor >= 10
    }
}

impl fmt::Display for PachdVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1.{}.{}", self.minor, self.micro)
    }
}

impl FromStr for PachdVersion {
    type Err = BadVersion;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadVersion(text.to_owned());
        let trimmed = text.trim().trim_start_matches('v');
        let mut parts = trimmed.split('.');
        if parts.next() != Some("1") {
            return Err(bad());
        }
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let mut version = PachdVersion::latest(minor).ok_or_else(bad)?;
        if let Some(micro) = parts.next() {
            version.micro = micro.parse().map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_minor_and_patch_versions() {
        assert_eq!(
            "1.11".parse::<PachdVersion>().unwrap().to_string(),
            "1.11.9"
        );
        assert_eq!("1.13.1".parse::<PachdVersion>().unwrap().micro, 1);
        assert!("1.8".parse::<PachdVersion>().is_err());
        assert!("2.0".parse::<PachdVersion>().is_err());
        assert!(!"1.11.8".parse::<PachdVersion>().unwrap().has_auth_ops());
        assert!(PachdVersion::v1_11().has_auth_ops());
    }
}
