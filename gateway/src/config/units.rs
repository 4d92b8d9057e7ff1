//! The small value languages of the config file: durations, sizes, rates.
//!
//! Parsed once at load; request-time code only ever sees the typed values.
//! No `super::` here: the `units_rate` fuzz target compiles this file alone.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

/// Why a duration or size was refused; `Display` is the sentence the config
/// error shows after the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitError {
    /// Digits only, e.g. `"30"`.
    NoDurationUnit(String),
    NotADuration(String),
    UnknownDurationUnit {
        value: String,
        unit: String,
    },
    /// `"0s"`: a zero timeout or window is never meant.
    Zero(String),
    NotASize(String),
    UnknownSizeUnit {
        value: String,
        unit: String,
    },
    /// Overflows 64 bits.
    TooLarge(String),
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnitError::NoDurationUnit(s) => {
                write!(f, "{s:?} has no unit (use s, m, h or d, e.g. \"30s\")")
            }
            UnitError::NotADuration(s) => write!(
                f,
                "{s:?} is not a duration (e.g. \"30s\", \"15m\", \"12h\", \"7d\")"
            ),
            UnitError::UnknownDurationUnit { value, unit } => {
                write!(f, "{value:?} has unknown unit {unit:?} (use s, m, h or d)")
            }
            UnitError::Zero(s) => write!(f, "{s:?} must be greater than zero"),
            UnitError::NotASize(s) => write!(f, "{s:?} is not a size (e.g. \"10MB\", \"512KB\")"),
            UnitError::UnknownSizeUnit { value, unit } => {
                write!(
                    f,
                    "{value:?} has unknown unit {unit:?} (use B, KB, MB or GB)"
                )
            }
            UnitError::TooLarge(s) => write!(f, "{s:?} is too large"),
        }
    }
}

impl std::error::Error for UnitError {}

/// `"30s"`, `"15m"`, `"12h"`, `"7d"`: a positive whole number and one unit.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| UnitError::NoDurationUnit(s.to_string()))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| UnitError::NotADuration(s.to_string()))?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => {
            return Err(UnitError::UnknownDurationUnit {
                value: s.to_string(),
                unit: unit.to_string(),
            })
        }
    }
    .ok_or_else(|| UnitError::TooLarge(s.to_string()))?;
    if secs == 0 {
        return Err(UnitError::Zero(s.to_string()));
    }
    Ok(Duration::from_secs(secs))
}

/// `"10MB"`, `"512KB"`, `"1GB"`, `"100B"`. Multiples of 1024, as nginx reads them.
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    // Errors quote the value as written, surrounding spaces included.
    let n: u64 = num
        .parse()
        .map_err(|_| UnitError::NotASize(s.to_string()))?;
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => {
            return Err(UnitError::UnknownSizeUnit {
                value: s.to_string(),
                unit: unit.to_string(),
            })
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| UnitError::TooLarge(s.to_string()))
}

/// A CIDR, or a bare address meaning just that host.
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .map(|n| n.trunc())
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        for bad in [
            "",
            "s",
            "30",
            "0s",
            "-1s",
            "1.5h",
            "10 y",
            "30S",
            "1h30m",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MB"), Ok(10 << 20));
        assert_eq!(parse_size("1mb"), Ok(1 << 20));
        assert_eq!(parse_size("512KB"), Ok(512 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        for bad in ["", "MB", "1.5MB", "10TB", "-1MB", "99999999999999GB"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }
}
